#!/usr/bin/env bash
# One benchmark sitting: the Swift harness, the project's Python script,
# ../shared/bench/python_anchor.py (when ANCHOR=1) and the C limits,
# interleaved RUNS times, then the ratios of each Swift result to Python's and
# to C's. Results go to Benchmarks/results/ (not committed).
#
#   bash Benchmarks/sitting.sh                 # every workload, 3 runs
#   ONLY=W1 RUNS=1 BENCH_SCALE=0.3 bash Benchmarks/sitting.sh
#   BASE=/tmp/bench-before bash Benchmarks/sitting.sh   # A/B: also runs an earlier
#                                                       # harness binary each run
#
# The harness is built with the Swift runtime linked statically
# (--static-swift-stdlib), as c_limits is built -static; W1.process.fork and
# X.process.fork.raw also run from the default, dynamically linked build, whose
# rows are marked "[dynamic stdlib]": a fork's cost grows with the libraries
# mapped.
#
# Needs ../shared/bench (next to the project root) for c_limits.c and compare.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared/bench"
out="$root/Benchmarks/results"
RUNS="${RUNS:-3}"
ONLY="${ONLY:-W1,W2,W3,W4,W5,W6,W7,X}"
mkdir -p "$out"
rm -f "$out"/run*.json  # a sitting's ratios come from its own runs only

static_build="$root/.build-static"
swift build -c release --product multiprocessing-bench --package-path "$root" \
    --static-swift-stdlib --scratch-path "$static_build" >&2
swift build -c release --product multiprocessing-bench --package-path "$root" >&2
dynamic_only=$(echo ",$ONLY," | grep -qE ',(W1|W1.process|W1.process.fork|X|X.process|X.process.fork.raw),' \
    && echo "W1.process.fork,X.process.fork.raw" || true)
gcc -O2 -static -Wall -Wextra -o "$out/c_limits" "$shared/c_limits.c"
gcc -O2 -Wall -Wextra -o "$out/shm_oneshot" "$root/Benchmarks/c/shm_oneshot.c"

for run in $(seq 1 "$RUNS"); do
    echo "== run $run/$RUNS ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    timeout -k 10 900 "$static_build/release/multiprocessing-bench" --only "$ONLY" --json "$out/run$run-swift.json"
    if [ -n "${BASE:-}" ]; then
        timeout -k 10 900 "$BASE" --only "$ONLY" --json "$out/run$run-base.json" >/dev/null \
            || echo "base run $run exited $?" >&2
    fi
    if [ -n "$dynamic_only" ]; then
        timeout -k 10 300 "$root/.build/release/multiprocessing-bench" --only "$dynamic_only" \
            --json "$out/run$run-swift-dynamic.json" >/dev/null
    else
        rm -f "$out/run$run-swift-dynamic.json"
    fi
    timeout -k 10 900 python3 "$root/Benchmarks/python/bench_python.py" --only "$ONLY" \
        --json "$out/run$run-python.json" 2>/dev/null || echo "python run $run exited $?" >&2
    timeout -k 10 600 "$out/c_limits" --json "$out/run$run-c.json" >/dev/null 2>&1 \
        || echo "c_limits run $run exited $?" >&2
    case ",$ONLY," in
    *,W5,* | *,W5.shm,* | *,W5.shm.oneshot,*)
        timeout -k 10 300 "$out/shm_oneshot" --json "$out/run$run-c-extra.json" \
            || echo "shm_oneshot run $run exited $?" >&2 ;;
    esac
    if [ "${ANCHOR:-0}" = 1 ]; then
        BENCH_NO_EXTRAS=1 BENCH_ONLY="$ONLY" timeout -k 10 900 python3 "$shared/python_anchor.py" \
            --json "$out/run$run-anchor.json" >/dev/null 2>&1 || echo "python_anchor run $run exited $?" >&2
    fi
done

python3 "$root/Benchmarks/ratios.py" "$out" "$RUNS"
