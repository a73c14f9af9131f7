//===----------------------------------------------------------------------===//
// Apus Service: the operations endpoint, a tiny HTTP/1.1 responder for /metrics and /status.
//===----------------------------------------------------------------------===//

import Reactor
import Telemetry

/// Serves a service's metrics and status over HTTP on `admin_listen` (loopback by default).
///
/// One request per connection, answered and closed (RFC 9112 section 9.6, `Connection: close`):
///
/// ```
/// GET /metrics HTTP/1.1        → 200, Prometheus text format 0.0.4
/// GET /status HTTP/1.1         → 200, the same JSON document as `apus status --json`
/// anything else                → 404, 405 or 400
/// ```
enum AdminEndpoint {
    /// The longest request head read; an administrator's scraper sends a few hundred bytes.
    static let maximumRequestHead = 8192

    /// Opens the endpoint on `group`; returns its bound address.
    static func start(
        on group: EventLoopGroup, address: SocketAddress, metrics: MetricsRegistry,
        status: @escaping @Sendable () -> JSONValue
    ) throws -> SocketAddress {
        var options = ConnectionOptions()
        options.idleTimeout = .seconds(10)
        options.maximumBufferedInput = maximumRequestHead
        let port = try group.listen(
            ListenerSpec(host: address.host, port: address.port, options: options) { _ in
                AdminRequestHandler(metrics: metrics, status: status)
            })
        return SocketAddress(host: address.host, port: port)
    }

    /// The response to one request head (start line and headers, without the blank line).
    static func respond(to head: String, metrics: MetricsRegistry, status: () -> JSONValue) -> [UInt8] {
        // request-line = method SP request-target SP HTTP-version (RFC 9112 section 3)
        let requestLine = head.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return response(400, "Bad Request", type: "text/plain", body: "bad request\n")
        }
        let target = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            return response(
                405, "Method Not Allowed", type: "text/plain", body: "GET only\n", extra: "Allow: GET, HEAD\r\n")
        }
        let headOnly = parts[0] == "HEAD"
        switch target {
        case "/metrics":
            return response(
                200, "OK", type: "text/plain; version=0.0.4; charset=utf-8", body: metrics.prometheusText(),
                headOnly: headOnly)
        case "/status":
            return response(200, "OK", type: "application/json", body: status().text + "\n", headOnly: headOnly)
        default:
            return response(404, "Not Found", type: "text/plain", body: "try /metrics or /status\n", headOnly: headOnly)
        }
    }

    static func response(
        _ code: Int, _ reason: String, type: String, body: String, extra: String = "",
        headOnly: Bool = false
    ) -> [UInt8] {
        let bodyBytes = Array(body.utf8)
        var bytes = Array(
            ("HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bodyBytes.count)\r\n"
                + "Cache-Control: no-store\r\n\(extra)Connection: close\r\n\r\n").utf8)
        if !headOnly { bytes += bodyBytes }
        return bytes
    }
}

/// One admin connection: read the request head, answer, close.
final class AdminRequestHandler: ConnectionHandler {
    private let metrics: MetricsRegistry
    private let status: @Sendable () -> JSONValue
    private var answered = false

    init(metrics: MetricsRegistry, status: @escaping @Sendable () -> JSONValue) {
        self.metrics = metrics
        self.status = status
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard !answered else { return bytes.count }
        let terminator: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
        var end: Int?
        if bytes.count >= 4 {
            for index in 0...(bytes.count - 4)
            where bytes[index] == 0x0D && Array(bytes[index..<index + 4]) == terminator {
                end = index
                break
            }
        }
        guard let end else {
            if bytes.count >= AdminEndpoint.maximumRequestHead {
                answered = true
                connection.write(
                    AdminEndpoint.response(
                        431, "Request Header Fields Too Large", type: "text/plain",
                        body: "request head too large\n"))
                connection.close(.afterFlush)
                return bytes.count
            }
            return 0
        }
        answered = true
        let head = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<end]), as: UTF8.self)
        connection.write(AdminEndpoint.respond(to: head, metrics: metrics, status: status))
        connection.close(.afterFlush)
        return bytes.count
    }
}
