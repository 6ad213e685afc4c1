// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "AccessGateway",
    products: [
        .library(name: "GatewayCore", targets: ["GatewayCore"]),
        .library(name: "LinkCore", targets: ["LinkCore"]),
        .library(name: "BinTestKit", targets: ["BinTestKit"]),
        .library(name: "GatewayAdmin", targets: ["GatewayAdmin"]),
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "bin_test", targets: ["bin_test"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        // liburcu (QSBR flavour + concurrent data structures) through a small shim.
        .systemLibrary(
            name: "CURCU",
            pkgConfig: "liburcu-qsbr",
            providers: [.apt(["liburcu-dev"])]
        ),
        // Linux calls the Glibc module does not export (epoll, eventfd, futex, accept4).
        .target(name: "CLinux"),
        // The system OpenSSL 3 (Debian libssl-dev), like liburcu above.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // OpenSSL glue in C, where its API is macros and callbacks: contexts, SNI, ticket keys, I/O results.
        .target(name: "CTLS", dependencies: ["COpenSSL"]),
        .target(
            name: "GatewayCore",
            dependencies: [
                "CURCU", "CLinux", "CTLS",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Settings from flags, a YAML file and the environment, validated; shared by gateway and bin_test.
        .target(
            name: "GatewayCLI",
            dependencies: [
                "GatewayCore", "CLinux", "GatewayAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),
        .executableTarget(
            name: "gateway",
            dependencies: ["GatewayCLI"]
        ),
        // A core server's side of the link protocol (docs/LINK.md) on the engine's public API.
        .target(
            name: "LinkCore",
            dependencies: ["GatewayCore", .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The admin endpoint (docs/ADMIN.md): metrics, health, stats, drain and reload over HTTP, off the hot path.
        .target(
            name: "GatewayAdmin",
            dependencies: [
                "GatewayCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "BinTestKit",
            dependencies: [
                "GatewayCore", "GatewayCLI", "CLinux", "CTLS", "LinkCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tools/BinTestKit"
        ),
        .executableTarget(
            name: "bin_test",
            dependencies: ["BinTestKit"],
            path: "Tools/bin_test"
        ),
        // What every test target shares: the blocking test client and the child-process wrapper.
        .target(
            name: "TestSupport",
            dependencies: ["GatewayCore"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "GatewayCoreTests",
            dependencies: ["GatewayCore", "CLinux", "CURCU", "CTLS", "COpenSSL", "LinkCore", "BinTestKit", "TestSupport"]
        ),
        .testTarget(
            name: "GatewayCLITests",
            dependencies: ["GatewayCLI", "GatewayCore", "TestSupport"]
        ),
        .testTarget(
            name: "GatewayAdminTests",
            dependencies: ["GatewayAdmin", "GatewayCore", "TestSupport"]
        ),
        .testTarget(
            name: "BinTestTests",
            dependencies: ["BinTestKit", "GatewayCore", "CLinux", "LinkCore", "TestSupport"]
        ),
    ]
)
