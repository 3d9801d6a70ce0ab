// swift-tools-version: 6.0
import PackageDescription

// SwiftPM names a package reached by path after its folder, which is whatever
// the checkout is called: the one above this one.
let rootPackage = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "swift-multiprocessing")

// The cluster pool lives in a package of its own so that a user of the local
// pool alone never builds postgres-nio.
let package = Package(
    name: "swift-multiprocessing-cluster",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MultiprocessingCluster", targets: ["MultiprocessingCluster"]),
        .executable(name: "multiprocessing-cluster-bench", targets: ["ClusterBenchmarks"]),
    ],
    dependencies: [
        .package(path: ".."),
        // The broker's client: the ecosystem's PostgreSQL driver (SwiftNIO based).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "MultiprocessingCluster",
            dependencies: [
                .product(name: "Multiprocessing", package: rootPackage),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "ClusterBenchmarks",
            dependencies: [
                "MultiprocessingCluster", .product(name: "Multiprocessing", package: rootPackage),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ]),
        // The work the tests run, in a module of its own: the test node
        // program and the tests both link it, so its types have the same
        // names in both.
        .target(
            name: "ClusterTestWork", dependencies: [.product(name: "Multiprocessing", package: rootPackage)],
            path: "Tests/ClusterTestWork"),
        .executableTarget(
            name: "ClusterTestNode",
            dependencies: [
                "MultiprocessingCluster", "ClusterTestWork", .product(name: "Multiprocessing", package: rootPackage),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ClusterTestNode"),
        .testTarget(
            name: "MultiprocessingClusterTests",
            dependencies: [
                "MultiprocessingCluster", "ClusterTestWork", "ClusterTestNode",
                .product(name: "Multiprocessing", package: rootPackage),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
