// swift-tools-version: 6.1
// perf/: the side-by-side runner's Swift parts, kept out of the main build.
//   NIOEcho            a SwiftNIO echo server for the gateway frame (a reference peer)
//   GatewayBenchmarks  ordo-one/benchmark micro-benchmarks of the engine's hot parts
import PackageDescription

let package = Package(
    name: "AccessGatewayPerf",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "AccessGateway", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "NIOEcho",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "GatewayBenchmarks",
            dependencies: [
                .product(name: "GatewayCore", package: "AccessGateway"),
                .product(name: "LinkCore", package: "AccessGateway"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/GatewayBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
