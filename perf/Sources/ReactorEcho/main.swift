//===----------------------------------------------------------------------===//
// perf/run reactor-echo and reactor-idle: Apus's reactor as an echo server.
//
// usage: ReactorEcho PORT LOOPS [CERT KEY]    prints "ready" when listening, runs until killed
//        ReactorEcho make-certificate DIR    writes DIR/cert.pem and DIR/key.pem
// APUS_ECHO_COUNTERS=1 counts bytes and handshakes as the services' listeners do (reactor-counters).
//===----------------------------------------------------------------------===//

import Glibc
import Reactor

/// Echoes what it reads: the same work per message as perf/c/echo-server.c.
final class Echo: ConnectionHandler {
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        return bytes.count
    }
}

signal(SIGPIPE, SIG_IGN)
let arguments = CommandLine.arguments
// `ReactorEcho make-certificate DIR`: the benchmark's certificate, made with Apus's own generator.
if arguments.count == 3, arguments[1] == "make-certificate" {
    do {
        try SelfSignedCertificate.make(certificatePath: arguments[2] + "/cert.pem", keyPath: arguments[2] + "/key.pem")
        exit(0)
    } catch {
        print("ReactorEcho: \(error)")
        exit(1)
    }
}
guard arguments.count >= 3, let port = UInt16(arguments[1]), let loops = Int(arguments[2]) else {
    print("usage: ReactorEcho PORT LOOPS [CERT KEY]")
    exit(2)
}
do {
    var tls: TLSContextHolder? = nil
    if arguments.count >= 5 {
        tls = TLSContextHolder(try TLSContext.server(certificateChain: arguments[3], privateKey: arguments[4]))
    }
    let group = try EventLoopGroup(loopCount: loops, workerCount: 1, name: "echo")
    var spec = ListenerSpec(host: "127.0.0.1", port: port, tls: tls) { _ in Echo() }
    spec.backlog = 4096
    if let flag = getenv("APUS_ECHO_COUNTERS"), String(cString: flag) == "1" {
        spec.options.counters = ConnectionCounters()
    }
    try group.listen(spec)
    // Unbuffered, so the bench script sees it at once.
    _ = write(1, "ready\n", 6)
    while true { pause() }
} catch {
    print("ReactorEcho: \(error)")
    exit(1)
}
