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
        .target(name: "MailStore", dependencies: ["CShims"]),

        // MARK: - Executables
        .executableTarget(name: "apus", dependencies: ["Reactor", "IMAPProtocol", "MailStore"]),
        // libFuzzer entry point over framing and the command parser (see perf/fuzz/README.md).
        .executableTarget(name: "IMAPFuzz", dependencies: ["IMAPProtocol"]),

        // MARK: - Tests
        .testTarget(name: "ReactorTests", dependencies: ["Reactor", "CShims"]),
        .testTarget(name: "IMAPProtocolTests", dependencies: ["IMAPProtocol"]),
        .testTarget(name: "MailStoreTests", dependencies: ["MailStore"]),
    ]
)

for target in package.targets {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
