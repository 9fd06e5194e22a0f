#!/usr/bin/env python3
"""Pool start-up to first result, procpool against Python's multiprocessing.Pool(2), per start
method, measured in one run. Usage: bench/startup_vs_python.py BUILD_DIR/bench/startup_bench"""
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time


def square(x):
    return x * x


def python_ms(method, runs=15):
    ctx = mp.get_context(method)
    first, total = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        pool = ctx.Pool(2)
        pool.apply(square, (7,))
        t1 = time.perf_counter()
        pool.close()
        pool.join()
        t2 = time.perf_counter()
        first.append((t1 - t0) * 1e3)
        total.append((t2 - t0) * 1e3)
    return statistics.median(first), statistics.median(total)


def procpool_ms(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_repetitions=5",
                          "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            res[b["run_name"]] = b["real_time"]
    return res


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pp = procpool_ms(sys.argv[1])
    print(f"{'method':<11} {'procpool first':>15} {'python first':>13} {'ratio':>7}"
          f" {'procpool start+stop':>20} {'python start+stop':>18} {'ratio':>7}")
    for m in ("fork", "spawn", "forkserver"):
        py_first, py_total = python_ms(m)
        c_first = pp[f"start_to_first_result/{m}"]
        c_total = pp[f"start_and_shutdown/{m}"]
        print(f"{m:<11} {c_first:>12.2f} ms {py_first:>10.2f} ms {py_first / c_first:>6.1f}x"
              f" {c_total:>17.2f} ms {py_total:>15.2f} ms {py_total / c_total:>6.1f}x")


if __name__ == "__main__":
    main()
