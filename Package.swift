// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-multiprocessing",
    platforms: [.macOS(.v15)],
    products: [
        // Never `.dynamic`: spawned children find task types by name, which
        // needs the library linked into the same image as those types.
        .library(name: "Multiprocessing", targets: ["Multiprocessing"]),
        .executable(name: "multiprocessing-tour", targets: ["MultiprocessingTour"]),
        .executable(name: "multiprocessing-bench", targets: ["MultiprocessingBenchmarks"]),
    ],
    targets: [
        .target(name: "CMultiprocessing"),
        .target(name: "Multiprocessing", dependencies: ["CMultiprocessing"]),
        .executableTarget(name: "MultiprocessingTour", dependencies: ["Multiprocessing"]),
        .executableTarget(name: "MultiprocessingBenchmarks", dependencies: ["Multiprocessing"]),
        .testTarget(name: "MultiprocessingTests", dependencies: ["Multiprocessing"]),
    ],
    swiftLanguageModes: [.v6]
)
