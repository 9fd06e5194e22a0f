#!/usr/bin/env python3
"""Queue throughput, one producer process to one consumer, procpool::Queue against Python's
multiprocessing.Queue with the same workload (capacity 1024, int64 items and 1 KiB strings),
measured in one run. Usage: bench/queue_vs_python.py BUILD_DIR/bench/queue_bench"""
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time


def produce_forever(q, item, stop):
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
        except Exception:  # queue.Full: look at `stop` again
            pass


def python_items_per_s(item, n, runs=3):
    ctx = mp.get_context("fork")
    rates = []
    for _ in range(runs):
        q = ctx.Queue(1024)
        stop = ctx.Event()
        p = ctx.Process(target=produce_forever, args=(q, item, stop))
        p.start()
        q.get()  # the producer is running
        t0 = time.perf_counter()
        for _ in range(n):
            q.get()
        rates.append(n / (time.perf_counter() - t0))
        stop.set()
        while p.is_alive():  # let the producer's last put through
            try:
                q.get(timeout=0.05)
            except Exception:
                pass
        p.join()
    return statistics.median(rates)


def procpool_items_per_s(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_repetitions=5",
                          "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            res[b["run_name"].split("/")[0]] = b["items_per_second"]
    return res


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pp = procpool_items_per_s(sys.argv[1])
    print(f"{'workload':<14} {'procpool items/s':>17} {'python items/s':>15} {'ratio':>8}")
    for name, item, n in (("int64", 42, 200_000), ("string 1 KiB", "x" * 1024, 200_000)):
        key = "queue_int64" if name == "int64" else "queue_string_1k"
        py = python_items_per_s(item, n)
        print(f"{name:<14} {pp[key]:>17,.0f} {py:>15,.0f} {pp[key] / py:>7.1f}x")


if __name__ == "__main__":
    main()
