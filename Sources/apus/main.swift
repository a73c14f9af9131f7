//===----------------------------------------------------------------------===//
// apus: the command line of the Apus IMAP server, front end and load generator.
//===----------------------------------------------------------------------===//

import Glibc
import LoadGen
import Service

// A peer that vanishes must cost its connection, not the process.
signal(SIGPIPE, SIG_IGN)

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "load":
    exit(LoadGenCommand.run(Array(arguments.dropFirst())))
case nil, "help", "-h", "--help":
    print(ServiceCommand.usage)
    exit(arguments.isEmpty ? 2 : 0)
default:
    exit(ServiceCommand.run(arguments))
}
