//===----------------------------------------------------------------------===//
// Apus Service: the first `apus run` on a machine with no configuration.
//===----------------------------------------------------------------------===//

import Glibc

/// What the first `apus run` without any configuration does before starting: it writes a
/// configuration file into `./apus-data` (later runs and `apus user`, `apus config` from the same
/// directory read it), with ports the user may bind. The certificate, users file and data
/// directory follow from that file (`RunCommand.prepareFirstRun`).
enum FirstRun {
    /// The directory under the current one that holds everything of a first run.
    static let directoryName = "apus-data"
    static let configurationName = "apus.conf"

    /// `./apus-data/apus.conf` of the current directory.
    static func configurationPath() -> String {
        currentDirectory() + "/" + directoryName + "/" + configurationName
    }

    /// The four listening ports of a one-host setup.
    struct Ports: Equatable, Sendable {
        var frontEndPlain: UInt16
        var frontEndTLS: UInt16
        var backEndPlain: UInt16
        var backEndTLS: UInt16
    }

    /// IMAP's own ports (RFC 9051: 143 and 993) and the back end's, for root.
    static let standardPorts = Ports(frontEndPlain: 143, frontEndTLS: 993, backEndPlain: 1143, backEndTLS: 1993)
    /// The same shifted above 1024 for an ordinary user, who may not bind below it.
    static let unprivilegedPorts = Ports(
        frontEndPlain: 10143, frontEndTLS: 10993, backEndPlain: 11143, backEndTLS: 11993)

    /// The ports to write for a user who may (or may not) bind ports below 1024.
    static func ports(mayBindPrivilegedPorts: Bool) -> Ports {
        mayBindPrivilegedPorts ? standardPorts : unprivilegedPorts
    }

    /// True for root, unless the kernel refuses it port 143 anyway (a container without
    /// CAP_NET_BIND_SERVICE): a trial bind tells, and only EACCES counts as refused (a port
    /// already in use is for the real start to report).
    static func mayBindPrivilegedPorts() -> Bool {
        guard geteuid() == 0 else { return false }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return true }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = standardPorts.frontEndPlain.bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0 || errno != EACCES
    }

    /// The file a first run writes: everything relative to its own directory, so the directory
    /// can be moved; the listeners on `ports`; the rest left to the defaults `apus config` shows.
    static func configurationText(ports: Ports) -> String {
        """
        # Apus configuration written by the first `apus run` here. Later runs in this directory read
        # it; edit it freely (`apus config` prints every key with its value; dist/apus.conf in the
        # source tree documents each). Relative paths are relative to this file's directory.

        [global]
        run_dir = run
        data_dir = mail
        users_file = passwd
        log_file = apus.log
        certificate = tls/cert.pem
        private_key = tls/key.pem

        [imap4be]
        # The back end, on loopback: mail clients connect to the front end.
        listen = 127.0.0.1:\(ports.backEndPlain)
        tls_listen = 127.0.0.1:\(ports.backEndTLS)

        [imap4]
        # The front end mail clients connect to (STARTTLS on the first, implicit TLS on the second).
        listen = 0.0.0.0:\(ports.frontEndPlain)
        tls_listen = 0.0.0.0:\(ports.frontEndTLS)

        """
    }

    /// Writes `./apus-data/apus.conf` for this user and says what it chose. The path written,
    /// or the reason it could not be written.
    static func writeConfiguration() -> Result<String, ServiceStartError> {
        let directory = currentDirectory() + "/" + directoryName
        let path = directory + "/" + configurationName
        if let problem = Daemon.makeDirectory(directory) {
            return .failure(ServiceStartError("cannot make \(directory): \(problem)"))
        }
        let privileged = mayBindPrivilegedPorts()
        let ports = ports(mayBindPrivilegedPorts: privileged)
        let bytes = Array(configurationText(ports: ports).utf8)
        // O_EXCL: two first runs at once must not both write (the second reads the first's file).
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if descriptor < 0, errno == EEXIST { return .success(path) }
        guard descriptor >= 0 else {
            return .failure(ServiceStartError("cannot write \(path): \(String(cString: strerror(errno)))"))
        }
        let written = bytes.withUnsafeBufferPointer { writeAll(descriptor, $0) } && fsync(descriptor) == 0
        close(descriptor)
        guard written else {
            unlink(path)
            return .failure(ServiceStartError("cannot write \(path): \(String(cString: strerror(errno)))"))
        }
        print("apus: first run: wrote \(path); later runs from this directory read it")
        if privileged {
            print(
                "apus: running as root: the standard ports, \(ports.frontEndPlain) and \(ports.frontEndTLS) "
                    + "(back end \(ports.backEndPlain) and \(ports.backEndTLS))")
        } else {
            let why = geteuid() == 0 ? "binding ports below 1024 is refused here" : "not running as root"
            print(
                "apus: \(why), so ports below 1024 are not allowed: the front end uses "
                    + "\(ports.frontEndPlain) and \(ports.frontEndTLS), the back end \(ports.backEndPlain) and "
                    + "\(ports.backEndTLS) (instead of 143, 993, 1143, 1993)")
        }
        return .success(path)
    }
}
