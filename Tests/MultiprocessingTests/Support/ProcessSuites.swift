import Testing

/// Every suite that starts processes is nested here, so they run one at a
/// time: their checks for leaked descriptors and zombies look at the whole
/// test process, which another suite's children would disturb.
@Suite(.serialized)
enum ProcessSuites {}
