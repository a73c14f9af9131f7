// IMAPFrontend: BackendRouter, which back end holds a user's mailbox (route table, then rendezvous hashing).

import Glibc
import Reactor
import Synchronization

/// Chooses a back end for each user: the route table first (the user, then `@domain`), and for
/// everyone else rendezvous (highest random weight) hashing over the back-end names, so adding a
/// back end moves only the users it wins (about 1/N) and removing one moves only its own users.
///
/// Thread-safe: loops route concurrently while a reload swaps the table.
final class BackendRouter: Sendable {
    /// Back-end names, in configuration order.
    let backendNames: [String]
    private let configuredRoutes: [String: Int]
    private let fileRoutes = Mutex<[String: Int]>([:])
    private let fileStamp = Mutex<(seconds: Int, nanoseconds: Int, size: Int)?>(nil)
    let routesFile: String?

    init(backendNames: [String], routes: [String: String], routesFile: String?) throws(FrontendConfigurationError) {
        self.backendNames = backendNames
        var table: [String: Int] = [:]
        for (key, name) in routes {
            guard let index = backendNames.firstIndex(of: name) else {
                throw FrontendConfigurationError("route \(key) names an unknown back end \(name)")
            }
            table[BackendRouter.normalised(Array(key.utf8))] = index
        }
        configuredRoutes = table
        self.routesFile = routesFile
    }

    /// The index of the back end for `user` (a user name, maybe `local@domain`).
    func backendIndex(for user: [UInt8]) -> Int {
        let key = BackendRouter.normalised(user)
        let fromFile = fileRoutes.withLock { routes -> Int? in
            if routes.isEmpty { return nil }
            if let index = routes[key] { return index }
            if let at = key.utf8.lastIndex(of: UInt8(ascii: "@")) { return routes[String(key[at...])] }
            return nil
        }
        if let fromFile { return fromFile }
        if !configuredRoutes.isEmpty {
            if let index = configuredRoutes[key] { return index }
            if let at = key.utf8.lastIndex(of: UInt8(ascii: "@")), let index = configuredRoutes[String(key[at...])] {
                return index
            }
        }
        return rendezvousIndex(for: key)
    }

    /// Highest random weight: each back end scores hash(user, back end); the highest wins.
    private func rendezvousIndex(for key: String) -> Int {
        var best = 0
        var bestScore: UInt64 = 0
        for (index, name) in backendNames.enumerated() {
            var fnv = FNV1a()  // then a final mix for spread
            fnv.add(key.utf8)
            fnv.add(byte: 0)
            fnv.add(name.utf8)
            var hash = fnv.value
            hash ^= hash >> 33
            hash = hash &* 0xff51_afd7_ed55_8ccd
            hash ^= hash >> 33
            if index == 0 || hash > bestScore {
                best = index
                bestScore = hash
            }
        }
        return best
    }

    /// Lower-cased ASCII: routes match user names without regard to case.
    static func normalised(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Re-reads the routes file if its size or modification time changed. Blocking (run it on a
    /// worker). Returns a message for the log when something was read or went wrong, else nil.
    func reloadIfChanged() -> String? {
        guard let path = routesFile else { return nil }
        var info = stat()
        guard stat(path, &info) == 0 else {
            return "routes file \(path): \(String(cString: strerror(errno))); keeping the previous routes"
        }
        let stamp = (seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec, size: Int(info.st_size))
        let unchanged = fileStamp.withLock { old in old.map { $0 == stamp } ?? false }
        if unchanged { return nil }
        guard let text = BackendRouter.readFile(path) else {
            return "routes file \(path) could not be read; keeping the previous routes"
        }
        var table: [String: Int] = [:]
        var problems: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if words.isEmpty { continue }
            guard words.count == 2, let index = backendNames.firstIndex(of: String(words[1])) else {
                problems.append("line \(number + 1)")
                continue
            }
            table[BackendRouter.normalised(Array(words[0].utf8))] = index
        }
        fileRoutes.withLock { $0 = table }
        fileStamp.withLock { $0 = stamp }
        let suffix = problems.isEmpty ? "" : "; ignored bad \(problems.joined(separator: ", "))"
        return "routes file \(path): \(table.count) routes\(suffix)"
    }

    private static func readFile(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > 64 * 1024 * 1024 { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
