#!/usr/bin/env python3
"""Procrastinate anchor for the cluster benchmarks (X.cluster.map.tiny, X.cluster.apply.roundtrip).

Procrastinate (https://procrastinate.readthedocs.io) is a Python task queue on
PostgreSQL: the nearest existing thing to the cluster pool (jobs in a table,
LISTEN/NOTIFY to wake workers). This measures it in the shape of
Cluster/Sources/ClusterBenchmarks/main.swift, under the same names, so that
shared/bench/compare.py can put the two side by side (same sitting only).

Install (PyPI only):

    python3 -m venv /tmp/procrastinate-venv
    /tmp/procrastinate-venv/bin/pip install procrastinate 'psycopg[binary]'

Run (durable commits, as in a sitting):

    PG_DURABLE=1 bash Cluster/scripts/with-postgres.sh \\
        /tmp/procrastinate-venv/bin/python Cluster/bench/procrastinate_anchor.py \\
        --items 20000 [--runs 3] [--applies 50] [--batch 1000] [--json FILE]

    stdout : one JSON document, schema 1 (shared/bench/WORKLOADS.md)
    stderr : progress lines

What it does:

* Needs MULTIPROCESSING_CLUSTER_URL (with-postgres.sh exports it). Makes a
  schema of its own (procrastinate_bench_<pid>, via search_path), applies
  Procrastinate's schema there with App.schema_manager.apply_schema_async, and
  drops it at the end.
* Starts two worker processes (this file again with --worker), one per core,
  each `App.run_worker()` with Procrastinate's defaults: concurrency 1,
  listen_notify on (woken by the insert trigger's NOTIFY), polling fallback
  5 s. The task is a plain `def square(x): return x * x`.
* X.cluster.map.tiny: the driver defers N jobs with `Task.batch_defer_async`
  (one multi-row INSERT per --batch jobs, one commit each), then waits until
  none of them is 'todo' or 'doing' (a count on Procrastinate's partial index,
  polled every --poll seconds, 50 ms by default), then checks that exactly N
  are 'succeeded'. Rate = N / (first defer -> all done seen). Procrastinate has
  no result backend: the squares are computed by the workers and thrown away,
  only the job status comes back (counted, not fetched). That is cheaper than
  the Swift side, which carries every result back to the driver; storing the
  results in a table from the task would cost one more commit per item.
  Between runs the finished jobs stay in procrastinate_jobs, as they do by
  default in Procrastinate (each run checks its own id range), so the table
  grows by N per run. Do not TRUNCATE between runs (--truncate does, to show
  this): TRUNCATE resets the table's size statistics, the workers' cached
  plan of procrastinate_fetch_job_v2 is then made for an empty table, and
  every fetch probes the lock index once per waiting job (O(queue depth) per
  job: ~30 million index scans for 8000 jobs, half the rate or less, until
  autoanalyze catches up). Kept tables: ~7 index scans per job once the
  statistics know the table is big. The first timed run can still get the bad
  plan (seen at 20000 items: 11.5 million index scans in run 1, ~150 000 in
  runs 2 and 3 after autoanalyze; at 8000 items it did not happen): the
  median of 3 keeps it out. The progress line of each run on stderr shows
  these counts from pg_stat_user_tables.
* X.cluster.apply.roundtrip: on idle workers, one `Task.defer_async` (one
  commit), then wait for that job to be 'succeeded'. To see that without
  polling, the driver adds for this phase only an AFTER UPDATE trigger on
  procrastinate_jobs that NOTIFYs the job id when its status becomes
  'succeeded' (fired inside the worker's finishing commit), and LISTENs on a
  connection of its own. Median, min, max over --applies jobs, p99 in the note.

Worker processes get SIGTERM at the end whatever happens (then SIGKILL after
10 s), and PR_SET_PDEATHSIG so they die with the driver even if it is killed.
"""

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time

import procrastinate
import psycopg

URL_ENV = "MULTIPROCESSING_CLUSTER_URL"
SCHEMA_ENV = "PROCRASTINATE_BENCH_SCHEMA"
perf = time.perf_counter


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# The app lives in this file, run as __main__ by both the driver and the
# workers, and the task has an explicit name: Procrastinate's warning about
# an app in __main__ (meant for its CLI's task discovery) does not apply.
logging.getLogger("procrastinate.blueprints").addFilter(
    lambda record: getattr(record, "action", None) != "app_defined_in___main__")


def make_app(url, schema):
    connector = procrastinate.PsycopgConnector(
        conninfo=url, kwargs={"options": "-c search_path=%s" % schema})
    app = procrastinate.App(connector=connector)

    @app.task(name="square")
    def square(x):
        return x * x

    return app, square


# ------------------------------------------------------------------ worker --

def worker_main():
    url = os.environ[URL_ENV]
    schema = os.environ[SCHEMA_ENV]
    app, _ = make_app(url, schema)
    # Procrastinate's defaults for everything (concurrency 1, listen_notify,
    # polling intervals); its own handlers stop it on SIGTERM/SIGINT.
    app.run_worker(name="bench-worker-%d" % os.getpid())


def _die_with_parent():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_workers(count, url, schema):
    env = dict(os.environ)
    env[URL_ENV] = url
    env[SCHEMA_ENV] = schema
    procs = []
    for _ in range(count):
        procs.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent))
    return procs


def stop_workers(procs):
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ driver --

def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int((len(sorted_values) - 1) * p))]


def result(name, unit, better, sorted_values, note):
    """One result of schema 1 (shared/bench/WORKLOADS.md) over sorted values."""
    return {"name": name, "unit": unit, "better": better, "median": percentile(sorted_values, 0.5),
            "min": sorted_values[0], "max": sorted_values[-1], "reps": len(sorted_values), "note": note}


# The machine's facts as the Python anchor records them (Benchmarks/python).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Benchmarks", "python"))
from bench_python import machine_info  # noqa: E402


async def scalar(conn, query, params=None):
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0]


async def wait_for(conn, query, predicate, timeout, what, poll=0.05, procs=()):
    deadline = perf() + timeout
    while True:
        value = await scalar(conn, query)
        if predicate(value):
            return value
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("a worker exited (code %s) while waiting for %s" % (p.returncode, what))
        if perf() > deadline:
            raise TimeoutError("%s: still %r after %.0f s" % (what, value, timeout))
        await asyncio.sleep(poll)


async def truncate_jobs(conn):
    await conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events, "
                       "procrastinate_periodic_defers")


async def run_map(square, conn, items, batch, poll, timeout, procs):
    start = perf()
    ids = []
    for lo in range(0, items, batch):
        ids += await square.batch_defer_async(*({"x": i} for i in range(lo, min(items, lo + batch))))
    deferred = perf() - start
    await wait_for(
        conn,
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
        lambda n: n == 0, timeout, "map of %d jobs" % items, poll=poll, procs=procs)
    elapsed = perf() - start
    lo, hi = min(ids), max(ids)
    succeeded = await scalar(conn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                             " AND id BETWEEN %s AND %s", (lo, hi))
    total = await scalar(conn, "SELECT count(*) FROM procrastinate_jobs WHERE id BETWEEN %s AND %s", (lo, hi))
    if succeeded != items or total != items:
        raise RuntimeError("map: %d jobs, %d succeeded, %d expected" % (total, succeeded, items))
    return elapsed, deferred


async def driver(args):
    url = os.environ.get(URL_ENV)
    if not url:
        log("set %s (Cluster/scripts/with-postgres.sh does)" % URL_ENV)
        return 2
    schema = "procrastinate_bench_%d" % os.getpid()
    admin = await psycopg.AsyncConnection.connect(url, autocommit=True)
    procs = []
    listener = None
    results = []
    params = {"items": args.items, "runs": args.runs, "applies": args.applies,
              "between_runs": "truncate" if args.truncate else "keep",
              "batch": args.batch, "poll_s": args.poll, "workers": 2,
              "worker_concurrency": 1}
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    try:
        await admin.execute("CREATE SCHEMA %s" % schema)
        await admin.execute("SET search_path = %s" % schema)
        info["postgres"] = await scalar(admin, "SHOW server_version")
        params["synchronous_commit"] = await scalar(admin, "SHOW synchronous_commit")
        params["fsync"] = await scalar(admin, "SHOW fsync")
        app, square = make_app(url, schema)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            log("procrastinate %s, schema applied in %s; fsync=%s synchronous_commit=%s"
                % (procrastinate.__version__, schema, params["fsync"], params["synchronous_commit"]))

            procs = start_workers(2, url, schema)
            await wait_for(admin, "SELECT count(*) FROM procrastinate_workers",
                           lambda n: n >= 2, 60, "two workers registered", procs=procs)
            # Warm-up: both workers have run jobs and opened their pools.
            await run_map(square, admin, 200, args.batch, args.poll, 60, procs)
            if args.truncate:
                await truncate_jobs(admin)
            log("two workers up, warm")

            rates = []
            scans = ("SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), coalesce(idx_scan, 0),"
                     " coalesce(autoanalyze_count, 0) FROM pg_stat_user_tables"
                     " WHERE relid = 'procrastinate_jobs'::regclass")
            for run in range(args.runs):
                before = await (await admin.execute(scans)).fetchone()
                elapsed, deferred = await run_map(
                    square, admin, args.items, args.batch, args.poll, args.timeout, procs)
                rates.append(args.items / elapsed)
                await asyncio.sleep(0.6)  # statistics are flushed about every 0.5 s
                after = await (await admin.execute(scans)).fetchone()
                log("  map run %d: %d jobs in %.2f s (deferred in %.2f s): %.0f items/s"
                    " [procrastinate_jobs: %d seq scans reading %d rows, %d index scans, %d autoanalyze]"
                    % ((run + 1, args.items, elapsed, deferred, rates[-1])
                       + tuple(a - b for a, b in zip(after, before))))
                if args.truncate:
                    await truncate_jobs(admin)
            rates.sort()
            results.append(result(
                "X.cluster.map.tiny", "items/s", "higher", rates,
                ("procrastinate %s: %d integers squared, one job per item, deferred with "
                         "Task.batch_defer_async in batches of %d; two worker processes of "
                         "Procrastinate's default concurrency 1, driver and server on the same 2 "
                         "cores; done = no job left todo/doing (polled every %g s), then all %d "
                         "'succeeded' checked; finished jobs %s between runs; no result backend: results are not carried back "
                         "(the Swift side carries them); %d items where the Swift run uses a "
                         "million: the rate is per item, Procrastinate is slow"
                         % (procrastinate.__version__, args.items, args.batch, args.poll,
                            args.items, "truncated" if args.truncate else "kept in the table",
                            args.items))))

            # Round trips: a NOTIFY when a job becomes 'succeeded', for this phase only.
            await admin.execute("""
                CREATE FUNCTION bench_notify_succeeded() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_notify('%s', NEW.id::text); RETURN NEW; END $$""" % schema)
            await admin.execute("""
                CREATE TRIGGER bench_notify_succeeded AFTER UPDATE OF status ON procrastinate_jobs
                FOR EACH ROW WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION bench_notify_succeeded()""")
            listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await listener.execute("LISTEN %s" % schema)
            done = {}
            arrived = asyncio.Event()

            async def listen():
                async for n in listener.notifies():
                    done[int(n.payload)] = perf()
                    arrived.set()

            listen_task = asyncio.create_task(listen())
            try:
                times = []
                for index in range(args.applies + 3):
                    await asyncio.sleep(0.02)  # let both workers go back to waiting
                    start = perf()
                    job_id = await square.defer_async(x=index)
                    deadline = start + 30
                    while job_id not in done:
                        arrived.clear()
                        if job_id in done:
                            break
                        remaining = deadline - perf()
                        if remaining <= 0:
                            raise TimeoutError("job %d not done after 30 s" % job_id)
                        try:
                            await asyncio.wait_for(arrived.wait(), remaining)
                        except asyncio.TimeoutError:
                            pass
                    if index >= 3:  # the first three are warm-up
                        times.append((done[job_id] - start) * 1000)
            finally:
                listen_task.cancel()
                try:
                    await listen_task
                except (asyncio.CancelledError, Exception):
                    pass
            times.sort()
            p99 = percentile(times, 0.99)
            log("  round trip: p50 %.2f ms, p99 %.2f ms over %d" % (percentile(times, 0.5), p99, len(times)))
            results.append(result(
                "X.cluster.apply.roundtrip", "ms", "lower", times,
                ("procrastinate %s: one Task.defer_async on idle workers (woken by "
                         "LISTEN/NOTIFY), until a NOTIFY from a bench trigger on the job's "
                         "'succeeded' update; p99 %.2f ms; 3 commits per job (insert+notify, "
                         "fetch, finish)" % (procrastinate.__version__, p99))))
    finally:
        stop_workers(procs)
        if listener is not None:
            await listener.close()
        try:
            await admin.execute("DROP SCHEMA IF EXISTS %s CASCADE" % schema)
        except Exception as e:  # noqa: BLE001
            log("could not drop schema %s: %s" % (schema, e))
        await admin.close()

    info["loadavg_end"] = os.getloadavg()
    doc = {
        "tool": "procrastinate-anchor",
        "schema": 1,
        "unix_time": int(time.time()),
        "machine": info,
        "params": dict(params, procrastinate=procrastinate.__version__,
                       psycopg=psycopg.__version__),
        "results": results,
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--applies", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000, help="jobs per batch_defer_async")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between counts while waiting")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for one map run")
    parser.add_argument("--truncate", action="store_true",
                        help="TRUNCATE the job tables after the warm-up and between runs (see the docstring: slow)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return 0

    # SIGTERM/SIGHUP become KeyboardInterrupt so the finally blocks stop the workers.
    def interrupt(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    return asyncio.run(driver(args))


if __name__ == "__main__":
    sys.exit(main())
