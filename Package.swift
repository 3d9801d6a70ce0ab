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
        .executable(name: "multiprocessing-chaos", targets: ["MultiprocessingChaos"]),
    ],
    dependencies: [
        // The one dependency: the ecosystem's logging API, so a pool can say
        // what it does (workers replaced, items timed out) where the program logs.
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        // `swift package generate-documentation --target Multiprocessing`: a
        // command plugin, built only when it is run, never by `swift build`.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CMultiprocessing"),
        .target(
            name: "Multiprocessing",
            dependencies: ["CMultiprocessing", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "MultiprocessingTour", dependencies: ["Multiprocessing"]),
        .executableTarget(name: "MultiprocessingBenchmarks", dependencies: ["Multiprocessing"]),
        // The fault-injection program: crashes, hangs, kills and leak counts, each checked (README, "Faults").
        .target(name: "CMultiprocessingChaos"),
        .executableTarget(name: "MultiprocessingChaos", dependencies: ["Multiprocessing", "CMultiprocessingChaos"]),
        // Three everyday programs, each beside its Python version; ExamplesTests runs them.
        .executableTarget(
            name: "BatchFiles", dependencies: ["Multiprocessing"], path: "Examples/BatchFiles",
            exclude: ["batch_files.py"]),
        .executableTarget(
            name: "FlakyFunction", dependencies: ["Multiprocessing"], path: "Examples/FlakyFunction",
            exclude: ["flaky_function.py"]),
        .executableTarget(
            name: "Pipeline", dependencies: ["Multiprocessing"], path: "Examples/Pipeline", exclude: ["pipeline.py"]),
        // Whole programs the tests run, for behaviour only a program shows (its exit, its start-up).
        .executableTarget(
            name: "MultiprocessingTestPrograms",
            dependencies: ["Multiprocessing", .product(name: "Logging", package: "swift-log")], path: "Tests/Programs"),
        // Async main.swift programs: one's globals under every start method, the closure forms' recipes.
        .executableTarget(
            name: "MultiprocessingAsyncTestProgram", dependencies: ["Multiprocessing"], path: "Tests/AsyncProgram"),
        .executableTarget(
            name: "MultiprocessingAsyncClosureProgram", dependencies: ["Multiprocessing"],
            path: "Tests/AsyncClosureProgram"),
        .testTarget(
            name: "MultiprocessingTests",
            dependencies: [
                "Multiprocessing", "MultiprocessingTestPrograms", "MultiprocessingAsyncTestProgram",
                "MultiprocessingAsyncClosureProgram", .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
