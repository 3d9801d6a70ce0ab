"""A flaky C function, called on 500 inputs: it crashes on some and never
returns on others. The same program in Swift is main.swift, beside this file.

    python3 flaky_function.py [count]

Python's Pool has no per-task timeout that stops the work: get(timeout)
only stops waiting. A crashed worker is replaced, but its task's result never
comes (it times out too), and a hung worker stays busy until the pool is
terminated, so each hang takes a worker away for the rest of the run.
"""
import ctypes
import multiprocessing
import signal
import sys
import time


def decode_record(record_id):
    if record_id % 37 == 36:
        return ctypes.c_int.from_address(16).value  # SIGSEGV
    if record_id % 53 == 52:
        while True:
            signal.pause()  # never returns
    return record_id * 3 + 1


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    decoded, failures = 0, []
    with multiprocessing.Pool() as pool:
        pending = [(record_id, pool.apply_async(decode_record, (record_id,))) for record_id in range(count)]
        deadline = time.monotonic() + 30
        for record_id, result in pending:
            try:
                result.get(timeout=max(0.0, deadline - time.monotonic()))
                decoded += 1
            except multiprocessing.TimeoutError as error:
                failures.append((record_id, f"no result (crashed or hung?) {error!r}"))
        pool.terminate()
    print(f"{decoded} records decoded, {len(failures)} failed:")
    for record_id, error in failures:
        print(f"  record {record_id}: {error}")
