"""A producer/consumer pipeline: two producer processes put jobs on a queue,
three consumer processes take them, work, and put results on another queue,
which the parent reads. The same program in Swift is main.swift, beside this
file.

    python3 pipeline.py [jobs]
"""
import multiprocessing
import sys


def producer(jobs, first, count):
    for job_id in range(first, first + count):
        jobs.put((job_id, list(range(job_id, job_id + 100))))


def consumer(number, jobs, outcomes):
    done = 0
    while (job := jobs.get()) is not None:
        job_id, numbers = job
        outcomes.put((job_id, sum(n * n for n in numbers), number))
        done += 1
    outcomes.put(("done", number, done))


if __name__ == "__main__":
    job_count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    jobs = multiprocessing.Queue(maxsize=1000)
    outcomes = multiprocessing.Queue()
    half = job_count // 2
    producers = [
        multiprocessing.Process(target=producer, args=(jobs, 0, half)),
        multiprocessing.Process(target=producer, args=(jobs, half, job_count - half)),
    ]
    consumers = [multiprocessing.Process(target=consumer, args=(n, jobs, outcomes)) for n in range(3)]
    for process in producers + consumers:
        process.start()

    total, seen = 0, set()
    for _ in range(job_count):
        job_id, sum_of_squares, _ = outcomes.get()
        total += sum_of_squares
        seen.add(job_id)
    for process in producers:
        process.join()
    for _ in consumers:
        jobs.put(None)
    done = {}
    for _ in consumers:
        _, number, count = outcomes.get()
        done[number] = count
    for process in consumers:
        process.join()

    print(f"{len(seen)} distinct jobs done, checksum {total}")
    for number, process in enumerate(consumers):
        print(f"consumer {number}: {done[number]} jobs, exit code {process.exitcode}")
