#!/usr/bin/env python3
"""procpool::List and procpool::Dict against the proxies of Python's multiprocessing.Manager with
the same workload, measured in one run: list append and list[i], dict[k] = v and dict.get(k)
(int keys and values, 100,000 of them), a counter updated from two processes at once (Python: under
a Manager Lock), and the per-step times of 1 GiB pushed into one List.
Usage: bench/containers_vs_python.py BUILD_DIR/bench/containers_bench"""
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time

N = 100_000


def per_op_us(fn, n, runs=3):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def count(d, lock, n):
    for _ in range(n):
        with lock:
            d["n"] = d.get("n", 0) + 1


def python_us():
    ctx = mp.get_context("fork")
    with ctx.Manager() as m:
        lst = m.list()
        res = {"list_push_back": per_op_us(lambda n: [lst.append(i) for i in range(n)], 20_000)}
        lst.extend(range(N))
        res["list_at"] = per_op_us(lambda n: [lst[i % N] for i in range(n)], 20_000)
        d = m.dict()
        res["dict_insert_or_assign"] = per_op_us(
            lambda n: [d.__setitem__(i % N, i) for i in range(n)], 20_000)
        for i in range(N):
            d[i] = i
        res["dict_get"] = per_op_us(lambda n: [d.get(i % N) for i in range(n)], 20_000)
        c = m.dict()
        lock = m.Lock()
        n = 2_000
        other = ctx.Process(target=count, args=(c, lock, n))
        other.start()
        t0 = time.perf_counter()
        count(c, lock, n)
        res["dict_update_two_processes"] = (time.perf_counter() - t0) / n * 1e6
        other.join()
        assert c["n"] == 2 * n
    return res


def procpool_results(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=0.3"],
                         check=True, capture_output=True, text=True).stdout
    return {b["run_name"].split("/")[0]: b for b in json.loads(out)["benchmarks"]}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pp = procpool_results(sys.argv[1])
    py = python_us()
    print(f"{'operation':<28} {'procpool us':>12} {'Manager us':>11} {'ratio':>8}")
    for name in ("list_push_back", "list_at", "dict_insert_or_assign", "dict_get",
                 "dict_update_two_processes"):
        b = pp[name]
        us = b["real_time"] / (1000 if b["time_unit"] == "ns" else 1)
        print(f"{name:<28} {us:>12.3f} {py[name]:>11.1f} {py[name] / us:>7.0f}x")
    g = pp["list_push_1gib"]
    print(f"1 GiB of 1 KiB strings into one List: {g['real_time'] / 1000:.2f} s, in 1 MiB steps:")
    for clock in ("wall", "cpu"):
        print(f"  {clock:<4} per step: median {g[clock + '_median_us']:>7.0f} us, p99 "
              f"{g[clock + '_p99_us']:>7.0f} us, max {g[clock + '_max_us']:>7.0f} us, "
              f"max/median {g[clock + '_max_over_median']:.2f}")

if __name__ == "__main__":
    main()
