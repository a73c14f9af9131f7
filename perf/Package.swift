// swift-tools-version:6.1
//
// Apus benchmarks: their own package, so the root package stays free of benchmark code.
import PackageDescription

let package = Package(
    name: "ApusPerf",
    dependencies: [.package(name: "Apus", path: "..")],
    targets: [
        // perf/run reactor-echo and reactor-idle: the reactor as an echo server (see perf/c for the C baseline).
        .executableTarget(
            name: "ReactorEcho",
            dependencies: [.product(name: "Reactor", package: "Apus")],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        // Counts heap allocations by interposing malloc and friends (see counter.c).
        .target(name: "CMallocCounter"),
        // perf/bench/parse: framing and command parsing over realistic client traffic.
        .executableTarget(
            name: "ParseBench",
            dependencies: [.product(name: "IMAPProtocol", package: "Apus"), "CMallocCounter"],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        // The store benchmark: appends with fsync (1 and 50 writers), index load, flags, SEARCH TEXT.
        .executableTarget(name: "StoreBench", dependencies: [.product(name: "MailStore", package: "Apus")]),
    ]
)
