// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "chat-relay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chat-relay", targets: ["chat-relay"])
    ],
    dependencies: [
        // The lowest versions the project is built and tested with.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
    ],
    targets: [
        // hiredis from the system (Debian: libhiredis-dev, 0.14): a module map and a one-line shim.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // A small Redis client: connections on NIO event loops, replies parsed by hiredis' reader
        // (which does no I/O), argv commands, replies as an enum, pipelining, a subscriber.
        .target(
            name: "RedisClient",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The relay core: messages, validation, brokers, the hub, SSE encoding. No HTTP; Redis
        // only through RedisClient.
        .target(
            name: "ChatRelay",
            dependencies: [
                "RedisClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // Access control: token verification (jwt-kit), room grants, stream tickets, the JWKS
        // cache. No HTTP serving: the HTTP layer applies it.
        .target(
            name: "RelayAccess",
            dependencies: [
                "ChatRelay",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP layer, on NIO's HTTP/1 codec: the server, every connection's pipeline, the route
        // table, request decoding, the one answer writer, JSON errors, health, metrics, CORS,
        // limits and timeouts, the page.
        .target(
            name: "ChatRelayHTTP",
            dependencies: [
                "ChatRelay",
                "RelayAccess",
                "RedisClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load generator behind `chat-relay bench`: many SSE streams and a scheduled publisher on
        // raw SwiftNIO, loss and order counted per message, latency in HdrHistograms.
        .target(
            name: "RelayBench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The executable: CLI, configuration, logging, lifecycle.
        .executableTarget(
            name: "chat-relay",
            dependencies: [
                "ChatRelay",
                "RedisClient",
                "ChatRelayHTTP",
                "RelayAccess",
                "RelayBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChatRelayTests",
            dependencies: [
                "ChatRelay", "RedisClient", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RelayAccessTests",
            dependencies: ["RelayAccess", "ChatRelay", "TestSupport", .product(name: "JWTKit", package: "jwt-kit")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RelayBenchTests",
            dependencies: ["RelayBench", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RedisClientTests",
            dependencies: ["RedisClient", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChatRelayHTTPTests",
            dependencies: [
                "ChatRelay", "ChatRelayHTTP", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Integration tests: real relay processes (and later redis-server, nginx, chromium) on loopback.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TestSupport",
                // Only for RedisKeySlot: a test picks a room by its hash slot.
                "RedisClient",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // Inputs that once broke a node, read by the protocol fuzzer's tests from the source tree.
            exclude: ["Corpus"],
            swiftSettings: swiftSettings
        ),
        // Helpers shared by the test targets: an independent SSE parser, processes, free ports.
        .target(
            name: "TestSupport",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
    ]
)
