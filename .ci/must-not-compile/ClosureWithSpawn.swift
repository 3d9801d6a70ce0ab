// A closure with a start method that cannot carry it: a compile error that
// says why and what to write, not a failure at run time.
// expected-error: a closure runs only in a forked child
import Multiprocessing

func start() throws {
    let child = try ChildProcess(startMethod: .spawn) { 1 }
    try child.start()
}
