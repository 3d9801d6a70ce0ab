"""Ratios of the Swift harness's results to Python's and to C's, per run of one sitting.

usage: python3 Benchmarks/ratios.py RESULTS_DIR RUNS

Prints, for each Swift workload, the median over runs of the Swift figure, the
Python figure and their ratio, and the ratios to the C limits the issues name.
Results of the harness built with a dynamically linked Swift runtime
(runN-swift-dynamic.json) appear as extra rows marked "[dynamic stdlib]".
With an earlier harness's results (runN-base.json, sitting.sh's BASE=), the
last column is this harness over that one, per run (for "lower is better"
units, below 1 is faster).
"""
import json
import statistics
import sys

# Swift workload -> the C figure it is compared with.
C_REFERENCE = {
    "W1.process.fork": "C.fork.exit_wait",
    "W4.pipe.pingpong.bytes8": "C.pipe.pingpong8",
    "W4.pipe.pingpong.obj": "C.pipe.pingpong8",
    "W4.pipe.oneway.bytes8": "C.pipe.oneway8.unbatched",
    "X.pipe.oneway.bytes8.unbatched": "C.pipe.oneway8.unbatched",
    "W5.pipe.single": "C.pipe.bw",
    "W5.pipe.chunks1M": "C.pipe.bw",
    "W3.pool.apply": "C.pipe.pingpong8",
    "W5.shm.steady": "C.shm.bw",
    "W5.shm.oneshot": "C.shm.oneshot",
    "X.process.fork.raw": "C.fork.exit_wait",
}


# Library workloads (X.*) compared with the Python workload of the same shape.
PYTHON_REFERENCE = {
    "X.shm.oneshot.pooled": "W5.shm.oneshot",
    "X.pipe.oneway.bytes8.unbatched": "W4.pipe.oneway.bytes8",
}


DYNAMIC = "[dynamic stdlib]"


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {r["name"]: r for r in data.get("results", [])}


def in_ms(result):
    value = result["median"]
    return value / 1000 if result["unit"] == "us" else value


def main():
    folder, runs = sys.argv[1], int(sys.argv[2])
    rows = {}
    for run in range(1, runs + 1):
        swift = load(f"{folder}/run{run}-swift.json")
        python = load(f"{folder}/run{run}-python.json")
        anchor = load(f"{folder}/run{run}-anchor.json")
        c = load(f"{folder}/run{run}-c.json")
        c.update(load(f"{folder}/run{run}-c-extra.json"))  # Benchmarks/c/shm_oneshot.c
        base = load(f"{folder}/run{run}-base.json")
        dynamic = load(f"{folder}/run{run}-swift-dynamic.json")
        swift.update({f"{name} {DYNAMIC}": result for name, result in dynamic.items()})
        for label, result in swift.items():
            name = label.removesuffix(f" {DYNAMIC}")
            row = rows.setdefault(label, {"unit": result["unit"], "swift": [], "python": [], "vs_py": [], "c": [], "vs_c": [],
                                         "anchor": [], "vs_anchor": [], "vs_base": []})
            if label in base:
                row["vs_base"].append(result["median"] / base[label]["median"])
            py_name = PYTHON_REFERENCE.get(name, name)
            if py_name in anchor:
                row["anchor"].append(anchor[py_name]["median"])
                row["vs_anchor"].append(result["median"] / anchor[py_name]["median"])
            row["swift"].append(result["median"])
            if py_name in python:
                row["python"].append(python[py_name]["median"])
                row["vs_py"].append(result["median"] / python[py_name]["median"])
            ref = C_REFERENCE.get(name)
            if ref and ref in c:
                cval = in_ms(c[ref]) if result["unit"] == "ms" else c[ref]["median"]
                row["c"].append(f"{ref} {cval:.4g}")
                row["vs_c"].append(result["median"] / cval)

    def med(values):
        return f"{statistics.median(values):.4g}" if values else "-"

    def spread(values):
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.3g}"
        return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"

    print(f"Runs: {runs}. Medians over runs; ratios are taken within each run, then the median (and range) is shown.")
    print()
    with_base = any(row["vs_base"] for row in rows.values())
    print(f"| workload | unit | Swift | Python (project script) | Swift/Python | python_anchor.py | Swift/anchor | C reference | Swift/C |"
          + (" new/base |" if with_base else ""))
    print(f"|---|---|---:|---:|---:|---:|---:|---|---:|" + ("---:|" if with_base else ""))
    for name, row in rows.items():
        reference = f"{row['c'][0].split()[0]} {med([float(x.split()[1]) for x in row['c']])}" if row["c"] else "-"
        print(f"| {name} | {row['unit']} | {med(row['swift'])} | {med(row['python'])} | {spread(row['vs_py'])} "
              f"| {med(row['anchor'])} | {spread(row['vs_anchor'])} | {reference} | {spread(row['vs_c'])} |"
              + (f" {spread(row['vs_base'])} |" if with_base else ""))


if __name__ == "__main__":
    main()
