// swift-tools-version:6.1
import PackageDescription
let package = Package(
    name: "ApusPerf",
    dependencies: [.package(name: "Apus", path: "..")],
    targets: [
        .executableTarget(name: "PerfProbe", dependencies: [.product(name: "Reactor", package: "Apus")]),
        // The store benchmark: appends with fsync (1 and 50 writers), index load, flags, SEARCH TEXT.
        .executableTarget(name: "StoreBench", dependencies: [.product(name: "MailStore", package: "Apus")]),
    ]
)
