#!/usr/bin/env python3
"""CPython `multiprocessing` side of the swift-multiprocessing benchmarks.

Runs, with the standard library only, the workloads that the Swift executable
`multiprocessing-bench` runs, under the same names and units (W1..W7, see
WORKLOADS.md), and writes the same JSON (schema 1) so the two can be compared.

    python3 bench_python.py [--json FILE] [--only W1,W4.pipe]

    --json FILE   write the JSON document to FILE (default: print it on stdout)
    --only LIST   comma-separated name prefixes; run only workloads whose
                  names start with one of them (e.g. W1, W4.pipe, W6); a
                  full workload name selects just that workload
    stderr        progress lines and a table of the results

Environment (optional):
    BENCH_SCALE=1.0      multiply every repetition count (floor: 3)
    BENCH_TIMEOUT=150    wall-clock limit per workload, seconds
    BENCH_W2_N=200000    items per map (W2)
    BENCH_W3_N=5000      sequential calls per sample (W3)
    BENCH_W4_N=200000    messages per sample (W4 queues, one-way pipe)
    BENCH_W5_MIB=256     payload in MiB (W5)
    BENCH_W6_LIMIT=30000 count primes below this, 16 tasks (W6)

Start methods: W1 and W7 measure spawn, forkserver and fork; W2-W6 use an
explicit "fork" context (CPython 3.11's Linux default).  Every child is
daemonic; every workload runs under SIGALRM, with a watchdog thread behind it
that kills the children and exits if a workload still does not return.
"""

import os
import signal
import sys
import time
import multiprocessing as mp

# The module top level stays light: spawn and forkserver children re-import
# this file as __mp_main__ (json, argparse, threading are imported in main()).

perf = time.perf_counter
TOOL = "swift-multiprocessing-python-bench"

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
TIMEOUT = int(os.environ.get("BENCH_TIMEOUT", "150"))
W2_N = int(os.environ.get("BENCH_W2_N", "200000"))
W3_N = int(os.environ.get("BENCH_W3_N", "5000"))
W4_N = int(os.environ.get("BENCH_W4_N", "200000"))
W4_RTT = 20000
W5_BYTES = int(os.environ.get("BENCH_W5_MIB", "256")) << 20
W6_LIMIT = int(os.environ.get("BENCH_W6_LIMIT", "30000"))
W6_TASKS = 16


def R(n):
    """Repetition count scaled by BENCH_SCALE, never below 3."""
    return max(3, int(round(n * SCALE)))


# ----------------------------------------------------------------- targets --

def noop():
    pass


def sq(x):
    return x * x


def count_primes(limit):
    """Number of primes below `limit` by trial division (pure-Python CPU work)."""
    count = 0
    for n in range(2, limit):
        i = 2
        while i * i <= n:
            if n % i == 0:
                break
            i += 1
        else:
            count += 1
    return count


def _pattern(n):
    """n bytes (n a multiple of 256), every page written."""
    return bytes(range(256)) * (n // 256)


# ----------------------------------------------------------------- records --

RESULTS, ERRORS = [], []
UNIT_SECONDS, UNIT_LOADAVG = {}, {}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt(v):
    a = abs(v)
    if a >= 1e6:
        return "%.3fM" % (v / 1e6)
    if a >= 1e4:
        return "%.1fk" % (v / 1e3)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def record(name, unit, samples, better, note, **extra):
    s = sorted(samples)
    n = len(s)
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    rec = {"name": name, "unit": unit, "better": better, "median": med,
           "min": s[0], "max": s[-1], "reps": n, "note": note}
    rec.update(extra)
    RESULTS.append(rec)
    log("  %-32s %10s %-8s (n=%d)" % (name, fmt(med), unit, n))


class WorkloadTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise WorkloadTimeout("exceeded BENCH_TIMEOUT=%ds" % TIMEOUT)


# --------------------------------------------------- child-process helpers --

def _ctl_main(ctl, target, args):
    ctl.send_bytes(b"r")
    target(ctl, *args)


def start_child(ctx, target, args):
    """Start a daemonic child running target(ctl, *args) and wait until it is
    up; the child waits for b"g" on ctl before each timed repetition, so
    process start-up never lands inside a timed region."""
    ctl, ctl_child = ctx.Pipe()
    p = ctx.Process(target=_ctl_main, args=(ctl_child, target, args), daemon=True)
    p.start()
    ctl_child.close()
    if not ctl.poll(60):
        p.kill()
        raise RuntimeError("child did not start")
    ctl.recv_bytes()
    return p, ctl


def stop_child(p, timeout=30):
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join(5)


# ---------------------------------------------------------------------- W1 --

def w1_process(method, reps):
    """Process(target=noop).start() + join()."""
    ctx = mp.get_context(method)
    samples, first = [], None
    for i in range(reps + 1):                      # call 0 = cold
        t0 = perf()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        dt = (perf() - t0) * 1e3
        if p.exitcode != 0:
            raise RuntimeError("child exit code %r" % p.exitcode)
        if i:
            samples.append(dt)
        else:
            first = dt
    record("W1.process." + method, "ms", samples, "lower",
           "Process(target=noop).start()+join(), %s; first (cold) call %.2f ms"
           % (method, first), first=first)


# ---------------------------------------------------------------------- W2 --

def w2_map():
    """warm Pool(2): map / map cs=1 / imap_unordered cs=1000 of sq."""
    items = range(W2_N)
    expect = sum(x * x for x in items)
    pool = mp.get_context("fork").Pool(2)
    try:
        pool.map(sq, range(1000))                  # warm-up
        for name, reps, fn in (
            ("W2.pool.map.default", R(7), lambda: pool.map(sq, items)),
            ("W2.pool.map.cs1", R(3), lambda: pool.map(sq, items, chunksize=1)),
            ("W2.pool.imap_unordered.cs1000", R(7),
             lambda: list(pool.imap_unordered(sq, items, chunksize=1000))),
        ):
            if not selected(name):
                continue
            samples = []
            for _ in range(reps):
                t0 = perf()
                res = fn()
                samples.append(W2_N / (perf() - t0))
            if sum(res) != expect:
                raise RuntimeError("wrong map result")
            record(name, "tasks/s", samples, "higher",
                   "warm Pool(2), fork; map of sq over range(%d)" % W2_N)
    finally:
        pool.terminate()
        pool.join()


# ---------------------------------------------------------------------- W3 --

def w3_apply():
    """sequential pool.apply(sq, (i,)) round trips."""
    pool = mp.get_context("fork").Pool(2)
    try:
        for i in range(200):
            pool.apply(sq, (i,))
        samples = []
        for _ in range(R(5)):
            t0 = perf()
            for i in range(W3_N):
                if pool.apply(sq, (i,)) != i * i:
                    raise RuntimeError("wrong apply result")
            samples.append((perf() - t0) / W3_N * 1e6)
        record("W3.pool.apply", "us/call", samples, "lower",
               "batch of %d sequential pool.apply(sq,(i,)), warm Pool(2), fork; "
               "one sample = batch mean" % W3_N)
    finally:
        pool.terminate()
        pool.join()


# ---------------------------------------------------------------------- W4 --

def _queue_child(ctl, q, n, reps):
    for _ in range(reps):
        ctl.recv_bytes()
        put = q.put
        for i in range(n):
            put(i)


def _echo_child(ctl, conn, total, raw):
    recv, send = (conn.recv_bytes, conn.send_bytes) if raw else (conn.recv, conn.send)
    for _ in range(total):
        send(recv())


def _oneway_child(ctl, conn, n, reps):
    msg, send = b"12345678", conn.send_bytes
    for _ in range(reps):
        ctl.recv_bytes()
        for _ in range(n):
            send(msg)


def w4_queue(name, kind):
    """child puts N ints into a queue, parent gets them."""
    ctx, n, reps = mp.get_context("fork"), W4_N, R(5)
    q = ctx.Queue() if kind == "Queue" else ctx.SimpleQueue()
    p, ctl = start_child(ctx, _queue_child, (q, n, reps + 1))
    try:
        samples = []
        for rep in range(reps + 1):                # rep 0 = warm-up
            t0 = perf()
            ctl.send_bytes(b"g")
            get = q.get
            for _ in range(n):
                last = get()
            dt = perf() - t0
            if last != n - 1:
                raise RuntimeError("queue order/count mismatch")
            if rep:
                samples.append(n / dt)
        record(name, "msgs/s", samples, "higher",
               "mp.%s put->get, child to parent, N=%d ints, fork; start-up excluded"
               % (kind, n))
    finally:
        stop_child(p)
        q.close()
        if hasattr(q, "join_thread"):
            q.join_thread()


def w4_pingpong(name, raw):
    """duplex Pipe round trips."""
    ctx, m, reps, warm = mp.get_context("fork"), W4_RTT, R(7), 2000
    a, b = ctx.Pipe()
    p, ctl = start_child(ctx, _echo_child, (b, warm + reps * m, raw))
    b.close()
    try:
        send, recv, payload = ((a.send_bytes, a.recv_bytes, b"12345678") if raw
                               else (a.send, a.recv, 12345))
        for _ in range(warm):
            send(payload)
            recv()
        samples = []
        for _ in range(reps):
            t0 = perf()
            for _ in range(m):
                send(payload)
                recv()
            samples.append((perf() - t0) / m * 1e6)
        what = "send_bytes/recv_bytes of 8 B" if raw else "send/recv of a pickled int"
        record(name, "us/rtt", samples, "lower",
               "batch of %d round trips, %s, duplex Pipe (socketpair), fork" % (m, what))
    finally:
        stop_child(p)
        a.close()


def w4_oneway():
    """child send_bytes(8 B) x N over a one-way Pipe."""
    ctx, n, reps = mp.get_context("fork"), W4_N, R(5)
    r, w = ctx.Pipe(duplex=False)
    p, ctl = start_child(ctx, _oneway_child, (w, n, reps + 1))
    w.close()
    try:
        samples, recv = [], r.recv_bytes
        for rep in range(reps + 1):                # rep 0 = warm-up
            t0 = perf()
            ctl.send_bytes(b"g")
            for _ in range(n):
                recv()
            if rep:
                samples.append(n / (perf() - t0))
        record("W4.pipe.oneway.bytes8", "msgs/s", samples, "higher",
               "child send_bytes(8 B) x %d, parent recv_bytes, Pipe(duplex=False) "
               "(os.pipe), fork; start-up excluded" % n)
    finally:
        stop_child(p)
        r.close()


# ---------------------------------------------------------------------- W5 --

def _bulk_pipe_child(ctl, conn, nbytes, chunk, reps):
    buf = _pattern(chunk)
    for _ in range(reps):
        ctl.recv_bytes()
        for _ in range(nbytes // chunk):
            conn.send_bytes(buf)


def _shm_steady_child(ctl, name, src, reps):
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name=name)
    buf = shm.buf
    for _ in range(reps):
        ctl.recv_bytes()
        buf[:len(src)] = src
        ctl.send_bytes(b"d")
    del buf
    shm.close()


def _shm_oneshot_child(name, src):
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name=name)
    shm.buf[:len(src)] = src
    shm.close()


def w5_pipe(name, chunk):
    """W5_BYTES child -> parent over a one-way Pipe."""
    ctx, n, reps = mp.get_context("fork"), W5_BYTES, R(5)
    r, w = ctx.Pipe(duplex=False)
    p, ctl = start_child(ctx, _bulk_pipe_child, (w, n, chunk, reps + 1))
    w.close()
    try:
        samples = []
        for rep in range(reps + 1):                # rep 0 = warm-up
            t0 = perf()
            ctl.send_bytes(b"g")
            got = 0
            while got < n:
                got += len(r.recv_bytes())
            dt = perf() - t0
            if got != n:
                raise RuntimeError("short transfer")
            if rep:
                samples.append(n / dt / 1e9)
        how = ("one send_bytes(%d MiB)" % (n >> 20) if chunk >= n
               else "%d x send_bytes(%d KiB)" % (n // chunk, chunk >> 10))
        record(name, "GB/s", samples, "higher",
               how + " -> recv_bytes(), os.pipe, fork; GB=1e9 B")
    finally:
        stop_child(p)
        r.close()


def w5_shm_steady():
    """SharedMemory mapped on both sides: child copies in, parent copies out."""
    from multiprocessing import shared_memory
    ctx, n, reps = mp.get_context("fork"), W5_BYTES, R(5)
    src = _pattern(n)
    shm = shared_memory.SharedMemory(create=True, size=n)
    try:
        p, ctl = start_child(ctx, _shm_steady_child, (shm.name, src, reps + 1))
        try:
            dst = bytearray(n)
            dstv = memoryview(dst)                 # slice assignment = one memmove
            samples = []
            for rep in range(reps + 1):            # rep 0 = warm-up (first touch)
                t0 = perf()
                ctl.send_bytes(b"g")
                ctl.recv_bytes()
                dstv[:] = shm.buf[:n]
                dt = perf() - t0
                if rep:
                    samples.append(n / dt / 1e9)
            if dst[:256] != src[:256] or dst[-256:] != src[-256:]:
                raise RuntimeError("shm content mismatch")
            dstv.release()
            record("W5.shm.steady", "GB/s", samples, "higher",
                   "%d MiB: child writes into mapped SharedMemory, pipe signal, "
                   "parent copies out; fork" % (n >> 20))
        finally:
            stop_child(p)
    finally:
        shm.close()
        shm.unlink()


def w5_shm_oneshot():
    """create SharedMemory, child attaches and writes, parent copies out, unlink."""
    from multiprocessing import shared_memory
    ctx, n = mp.get_context("fork"), W5_BYTES
    src = _pattern(n)
    samples = []
    for _ in range(R(5)):
        t0 = perf()
        shm = shared_memory.SharedMemory(create=True, size=n)
        try:
            p = ctx.Process(target=_shm_oneshot_child, args=(shm.name, src), daemon=True)
            p.start()
            p.join(60)
            if p.exitcode != 0:
                raise RuntimeError("shm child failed: %r" % p.exitcode)
            out = bytes(shm.buf[:n])
            dt = perf() - t0
        finally:
            shm.close()
            shm.unlink()
        if out[-256:] != src[-256:]:
            raise RuntimeError("shm content mismatch")
        del out
        samples.append(n / dt / 1e9)
    record("W5.shm.oneshot", "GB/s", samples, "higher",
           "%d MiB incl. create, fork child, attach, first-touch write, copy out, "
           "unlink" % (n >> 20))


# ---------------------------------------------------------------------- W6 --

def w6_primes():
    """16 x count_primes: serial vs Pool(2), interleaved pairs."""
    tasks = [W6_LIMIT] * W6_TASKS
    expect = count_primes(W6_LIMIT)
    pool = mp.get_context("fork").Pool(2)
    try:
        pool.map(count_primes, [1000, 1000])
        ser, par, ratio = [], [], []
        for _ in range(R(5)):
            t0 = perf()
            rs = [count_primes(x) for x in tasks]
            t1 = perf()
            rp = pool.map(count_primes, tasks, chunksize=1)
            t2 = perf()
            if rs != rp or rs[0] != expect:
                raise RuntimeError("prime count mismatch")
            ser.append(t1 - t0)
            par.append(t2 - t1)
            ratio.append((t1 - t0) / (t2 - t1))
        note = "%d tasks x count_primes(%d)" % (W6_TASKS, W6_LIMIT)
        record("W6.primes.serial", "s", ser, "lower", note + ", in-process")
        record("W6.primes.pool2", "s", par, "lower",
               note + ", Pool(2).map chunksize=1, fork")
        record("W6.primes.speedup", "x", ratio, "higher",
               "serial/pool2 per interleaved pair; ideal 2.0 on 2 idle cores")
    finally:
        pool.terminate()
        pool.join()


# ---------------------------------------------------------------------- W7 --

def w7_pool(method, reps):
    """create Pool(2), await the first apply() result."""
    ctx = mp.get_context(method)
    samples, first = [], None
    for i in range(reps + 1):                      # call 0 = cold
        t0 = perf()
        pool = ctx.Pool(2)
        try:
            if pool.apply(sq, (3,)) != 9:
                raise RuntimeError("wrong apply result")
            dt = (perf() - t0) * 1e3
        finally:
            pool.terminate()
            pool.join()
        if i:
            samples.append(dt)
        else:
            first = dt
    record("W7.pool." + method, "ms", samples, "lower",
           "Pool(2) creation + first apply() result, %s; first (cold) call %.1f ms"
           % (method, first), first=first)


# ------------------------------------------------------------------- units --

# (label, names produced, callable).  A unit runs if one of its names matches
# --only; each runs under its own time limit.
UNITS = [
    ("W1.spawn", ["W1.process.spawn"], lambda: w1_process("spawn", R(30))),
    ("W1.forkserver", ["W1.process.forkserver"], lambda: w1_process("forkserver", R(50))),
    ("W1.fork", ["W1.process.fork"], lambda: w1_process("fork", R(100))),
    ("W2", ["W2.pool.map.default", "W2.pool.map.cs1", "W2.pool.imap_unordered.cs1000"],
     w2_map),
    ("W3", ["W3.pool.apply"], w3_apply),
    ("W4.queue", ["W4.queue.child_to_parent"],
     lambda: w4_queue("W4.queue.child_to_parent", "Queue")),
    ("W4.simplequeue", ["W4.simplequeue.child_to_parent"],
     lambda: w4_queue("W4.simplequeue.child_to_parent", "SimpleQueue")),
    ("W4.pingpong.bytes8", ["W4.pipe.pingpong.bytes8"],
     lambda: w4_pingpong("W4.pipe.pingpong.bytes8", True)),
    ("W4.pingpong.obj", ["W4.pipe.pingpong.obj"],
     lambda: w4_pingpong("W4.pipe.pingpong.obj", False)),
    ("W4.oneway", ["W4.pipe.oneway.bytes8"], w4_oneway),
    ("W5.pipe.single", ["W5.pipe.single"], lambda: w5_pipe("W5.pipe.single", W5_BYTES)),
    ("W5.pipe.chunks1M", ["W5.pipe.chunks1M"], lambda: w5_pipe("W5.pipe.chunks1M", 1 << 20)),
    ("W5.shm.steady", ["W5.shm.steady"], w5_shm_steady),
    ("W5.shm.oneshot", ["W5.shm.oneshot"], w5_shm_oneshot),
    ("W6", ["W6.primes.serial", "W6.primes.pool2", "W6.primes.speedup"], w6_primes),
    ("W7.spawn", ["W7.pool.spawn"], lambda: w7_pool("spawn", R(10))),
    ("W7.forkserver", ["W7.pool.forkserver"], lambda: w7_pool("forkserver", R(10))),
    ("W7.fork", ["W7.pool.fork"], lambda: w7_pool("fork", R(20))),
]

ONLY = []


ALL_NAMES = {n for _, names, _ in UNITS for n in names}


def selected(name):
    """A full workload name selects only itself; anything else is a prefix."""
    return not ONLY or any(name == p or (p not in ALL_NAMES and name.startswith(p))
                           for p in ONLY)


# -------------------------------------------------------------------- main --

def machine_info():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
            "cpu_model": model, "kernel": os.uname().release,
            "python": sys.version.split()[0], "implementation": sys.implementation.name}


def document(info, t_start):
    info = dict(info, loadavg_1min_end=round(os.getloadavg()[0], 2))
    return {
        "tool": TOOL, "schema": 1, "unix_time": int(time.time()),
        "machine": info,
        "params": {"scale": SCALE, "timeout_s": TIMEOUT, "only": ONLY,
                   "w2_n": W2_N, "w3_n": W3_N, "w4_n": W4_N, "w4_rtt": W4_RTT,
                   "w5_bytes": W5_BYTES, "w6_limit": W6_LIMIT, "w6_tasks": W6_TASKS},
        "unit_seconds": UNIT_SECONDS, "unit_loadavg_1min": UNIT_LOADAVG,
        "total_seconds": round(perf() - t_start, 2),
        "results": list(RESULTS), "errors": list(ERRORS),
    }


def emit(doc, out_path):
    import json
    text = json.dumps(doc, indent=1)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


def print_table():
    log("")
    log("%-32s %-8s %-6s %10s %10s %10s %5s" %
        ("name", "unit", "better", "median", "min", "max", "reps"))
    log("-" * 87)
    for r in RESULTS:
        log("%-32s %-8s %-6s %10s %10s %10s %5d" % (
            r["name"], r["unit"], r["better"], fmt(r["median"]), fmt(r["min"]),
            fmt(r["max"]), r["reps"]))
    for e in ERRORS:
        log("ERROR %s: %s" % (e["unit"], e["error"]))


def main():
    import argparse
    import threading
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="FILE", help="write schema-1 JSON here")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma-separated name prefixes, e.g. W1,W4.pipe")
    args = ap.parse_args()
    ONLY[:] = [p.strip() for p in args.only.split(",") if p.strip()]
    units = [u for u in UNITS if any(selected(n) for n in u[1])]
    if not units:
        log("--only %s matches no workload" % args.only)
        return 2

    info = machine_info()
    info["loadavg_1min"] = round(os.getloadavg()[0], 2)
    t_start = perf()

    # Backstop behind SIGALRM: if a unit outlives its limit by 60 s (e.g. a
    # cleanup step hangs), kill our children, write what we have, and exit.
    state = {"label": None, "deadline": None}

    def watchdog():
        while True:
            time.sleep(1)
            d = state["deadline"]
            if d is not None and perf() > d:
                ERRORS.append({"unit": state["label"], "error": "hard watchdog: hung, aborted"})
                log("WATCHDOG: %s hung; killing children and exiting" % state["label"])
                for c in mp.active_children():
                    c.kill()
                print_table()
                emit(document(info, t_start), args.json)
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    signal.signal(signal.SIGALRM, _on_alarm)

    for label, names, fn in units:
        log("[%s]" % label)
        t0 = perf()
        state["label"], state["deadline"] = label, t0 + TIMEOUT + 60
        signal.alarm(TIMEOUT)
        try:
            fn()
        except Exception as e:                      # keep going with the next unit
            ERRORS.append({"unit": label, "error": "%s: %s" % (type(e).__name__, e)})
            log("  ERROR: %s: %s" % (type(e).__name__, e))
        finally:
            signal.alarm(0)
            state["deadline"] = None
        UNIT_SECONDS[label] = round(perf() - t0, 2)
        UNIT_LOADAVG[label] = round(os.getloadavg()[0], 2)

    print_table()
    doc = document(info, t_start)
    log("total %.1f s, 1-min load average %.2f at start, %.2f at end"
        % (doc["total_seconds"], info["loadavg_1min"], doc["machine"]["loadavg_1min_end"]))
    emit(doc, args.json)
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
