// A task whose result type is not Codable: the compiler must say that the
// result must be Codable, not offer stubs for the protocol's internals.
// expected-first-error: does not conform to protocol 'ProcessTask'
// expected-error: the type that run() returns must conform to Codable
// unexpected: add stubs for conformance
import Multiprocessing

struct Report: Sendable {
    var lines: [String]
}

struct MakeReport: ProcessTask {
    func run() -> Report { Report(lines: ["done"]) }
}
