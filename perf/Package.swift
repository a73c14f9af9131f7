// swift-tools-version:6.1
import PackageDescription
let package = Package(
    name: "ApusPerf",
    dependencies: [.package(name: "Apus", path: "..")],
    targets: [
        .executableTarget(name: "PerfProbe", dependencies: [.product(name: "Reactor", package: "Apus")]),
    ]
)
