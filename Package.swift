// swift-tools-version:6.1
//
// Apus: an IMAP4 server (imap4be) and front-end proxy (imap4) for Linux.
// No package dependencies: system C libraries come in through the CShims target.

import PackageDescription

/// Hot-path targets skip dynamic exclusivity checks in release builds: measured on this platform
/// they dominated user-space instructions per echoed message (about 1,257 down to about 500).
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "Apus",
    products: [
        .executable(name: "apus", targets: ["apus"]),
        .library(name: "Reactor", targets: ["Reactor"]),
        .library(name: "IMAPProtocol", targets: ["IMAPProtocol"]),
        .library(name: "MailStore", targets: ["MailStore"]),
        .library(name: "IMAPBackend", targets: ["IMAPBackend"]),
        .library(name: "IMAPFrontend", targets: ["IMAPFrontend"]),
        .library(name: "LoadGen", targets: ["LoadGen"]),
        .library(name: "Telemetry", targets: ["Telemetry"]),
    ],
    targets: [
        // MARK: - C
        .target(
            name: "CShims",
            path: "CShims",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("crypt")]
        ),

        // MARK: - Libraries
        .target(name: "Reactor", dependencies: ["CShims"], swiftSettings: hotPathSettings),
        .target(name: "IMAPProtocol", swiftSettings: hotPathSettings),
        // Telemetry for the fsync latency histogram the back end exposes; Reactor for its
        // semaphore (the fsync helper threads sleep on it), no sockets.
        .target(name: "MailStore", dependencies: ["CShims", "Reactor", "Telemetry"]),
        // Logs and metrics, shared by every service (no dependencies).
        .target(name: "Telemetry"),
        // imap4be: the back-end IMAP4rev1 + IMAP4rev2 server over MailStore.
        .target(name: "IMAPBackend", dependencies: ["Reactor", "IMAPProtocol", "MailStore", "Telemetry"],
                swiftSettings: hotPathSettings),
        // imap4: the client-access front end relaying over pooled back-end connections.
        .target(name: "IMAPFrontend", dependencies: ["Reactor", "IMAPProtocol", "Telemetry"], swiftSettings: hotPathSettings),
        // apus load: the load generator.
        .target(name: "LoadGen", dependencies: ["Reactor", "IMAPProtocol", "Telemetry"], swiftSettings: hotPathSettings),
        // Configuration, daemons, control socket, service start/stop/status, admin endpoint.
        .target(name: "Service", dependencies: ["Reactor", "IMAPBackend", "IMAPFrontend", "MailStore", "Telemetry", "CShims"]),

        // MARK: - Executables
        .executableTarget(name: "apus", dependencies: ["Service", "LoadGen", "Reactor", "MailStore", "Telemetry"]),
        // libFuzzer entry point over framing and the command parser (see perf/fuzz/README.md).
        .executableTarget(name: "IMAPFuzz", dependencies: ["IMAPProtocol"]),

        // MARK: - Tests
        // Shared by the back end's and the front end's tests: a real back end on loopback, a
        // blocking client, child processes with deadlines, and the real mail clients' runs.
        .target(name: "TestSupport", dependencies: ["IMAPBackend", "MailStore", "Reactor", "Telemetry"],
                path: "Tests/TestSupport"),
        .testTarget(name: "ReactorTests", dependencies: ["Reactor", "CShims"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry"]),
        .testTarget(name: "IMAPBackendTests",
                    dependencies: ["IMAPBackend", "Reactor", "IMAPProtocol", "MailStore", "Telemetry", "TestSupport"]),
        .testTarget(name: "IMAPFrontendTests",
                    dependencies: ["IMAPFrontend", "IMAPBackend", "Reactor", "IMAPProtocol", "Telemetry", "TestSupport", "CShims"]),
        // IMAPBackend: the stress run against Apus's own back end, started in process.
        .testTarget(name: "LoadGenTests", dependencies: ["LoadGen", "Reactor", "IMAPProtocol", "IMAPBackend", "Telemetry"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Reactor", "MailStore", "Telemetry", "TestSupport"]),
        .testTarget(name: "IMAPProtocolTests", dependencies: ["IMAPProtocol"]),
        .testTarget(
            name: "MailStoreTests",
            dependencies: ["MailStore", "CShims"],
            // The MIME corpus is read through #filePath, not bundled as resources.
            exclude: ["MIME/Corpus", "MIME/capture-dovecot.py"]
        ),
    ]
)

for target in package.targets {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
