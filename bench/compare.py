#!/usr/bin/env python3
"""procpool side by side with Python's multiprocessing.Pool and with the raw kernel, in one run.

Usage: bench/compare.py [BUILD_DIR] [--out DIR]
       bench/compare.py --plot-only CSV [--out DIR]

BUILD_DIR is a release build with the benchmarks and examples (default: build/release). Prints
one table (value, Python's value, ratio, target, met or not) and writes performance.csv and
performance.png (needs python3-matplotlib) into DIR (default: BUILD_DIR/perf). Absolute times
drift from run to run on a shared machine; the ratios are measured in the same run.
--plot-only redraws the chart from a CSV written before (into the CSV's directory unless --out).
"""
import argparse
import contextlib
import csv
import json
import math
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import threading
import time

TRIVIAL_TASKS = 200_000


# ---- Python's multiprocessing, the same workloads --------------------------------------------

def inc(x):
    return x + 1


def nbytes(b):
    return len(b)


def best_of(runs, fn):
    return statistics.median(fn() for _ in range(runs))


def py_round_trip_us(pool, n=3000):
    def once():
        t0 = time.perf_counter()
        for i in range(n):
            pool.apply_async(inc, (i,)).get()
        return (time.perf_counter() - t0) / n * 1e6
    return best_of(3, once)


def py_map_rate(pool, chunksize):
    def once():
        t0 = time.perf_counter()
        if chunksize:
            pool.map(inc, range(TRIVIAL_TASKS), chunksize)
        else:
            pool.map(inc, range(TRIVIAL_TASKS))
        return TRIVIAL_TASKS / (time.perf_counter() - t0)
    return best_of(3 if chunksize == 0 else 1, once)


def py_imap_unordered_rate(pool):
    t0 = time.perf_counter()
    for _ in pool.imap_unordered(inc, range(TRIVIAL_TASKS), 1):
        pass
    return TRIVIAL_TASKS / (time.perf_counter() - t0)


def py_args_rate(pool):
    args = [bytes(1 << 20)] * 64

    def once():
        t0 = time.perf_counter()
        pool.map(nbytes, args, 1)
        return 64 * (1 << 20) / (time.perf_counter() - t0)
    return best_of(5, once)


def echo(b):
    return b


def py_round_trip_64mib(pool):
    data = bytes(64 << 20)

    def once():
        t0 = time.perf_counter()
        pool.apply(echo, (data,))
        return len(data) / (time.perf_counter() - t0)
    return best_of(3, once)


def py_threads_rate(pool, threads=8, per_thread=300):
    """Tasks per second when `threads` threads each submit and wait, one task at a time."""
    def worker():
        for i in range(per_thread):
            pool.apply_async(inc, (i,)).get()

    def once():
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return threads * per_thread / (time.perf_counter() - t0)
    return best_of(3, once)


def percentiles(samples):
    s = sorted(samples)
    at = lambda q: s[int(q * (len(s) - 1))]  # noqa: E731
    return at(0.50), at(0.99), at(0.999)


def py_latencies_us(pool, n=3000):
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        pool.apply_async(inc, (i,)).get()
        out.append((time.perf_counter() - t0) * 1e6)
    return percentiles(out)


@contextlib.contextmanager
def cpu_burners(n):
    """`n` processes that only burn CPU, as busy neighbours on a shared machine would."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.3)  # let them get going
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def py_value_ns(n=200_000):
    v = mp.Value("i", 0)
    t0 = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    return (time.perf_counter() - t0) / n * 1e9


def py_startup_ms(method, runs=9):
    ctx = mp.get_context(method)
    first, total = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        pool = ctx.Pool(2)
        pool.apply(inc, (7,))
        t1 = time.perf_counter()
        pool.close()
        pool.join()
        t2 = time.perf_counter()
        first.append((t1 - t0) * 1e3)
        total.append((t2 - t0) * 1e3)
    return statistics.median(first), statistics.median(total)


def python_side():
    res = {}
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(inc, range(1000))  # warm up
        res["round_trip"] = py_round_trip_us(pool)
        res["map_chunk1"] = py_map_rate(pool, 1)
        res["imap_unordered"] = py_imap_unordered_rate(pool)
        res["map_auto"] = py_map_rate(pool, 0)
        res["args_64x1mib"] = py_args_rate(pool)
        res["rt_64mib"] = py_round_trip_64mib(pool)
        res["threads8"] = py_threads_rate(pool)
        res["rt_p50"], res["rt_p99"], res["rt_p999"] = py_latencies_us(pool)
        with cpu_burners(2):
            res["round_trip_loaded"] = py_round_trip_us(pool, n=1000)
            res["threads8_loaded"] = py_threads_rate(pool, per_thread=100)
    res["value"] = py_value_ns()
    for m in ("fork", "spawn", "forkserver"):
        res[f"first_{m}"], res[f"startstop_{m}"] = py_startup_ms(m)
    return res


# ---- procpool and the kernel, through the Google Benchmark programs --------------------------

def run_bench(binary, filt=None, reps=3):
    cmd = [binary, "--benchmark_format=json", f"--benchmark_repetitions={reps}",
           "--benchmark_report_aggregates_only=true"]
    if filt:
        cmd.append(f"--benchmark_filter={filt}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name", "median") == "median":
            res[b["run_name"]] = b
    return res


def real_ns(b):
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def prime_sieve_speedup(binary):
    out = subprocess.run([binary, "--limit", "1000000000"], check=True, capture_output=True,
                         text=True)
    m = re.search(r"speedup ([0-9.]+)x", out.stdout + out.stderr)
    if not m or "verified" not in out.stdout + out.stderr:
        sys.exit("prime_sieve did not report a verified count and a speedup:\n" + out.stdout)
    return float(m.group(1))


def sieve_seconds(out):
    m = re.search(r"time: ([0-9.]+) s", out)
    if not m:
        sys.exit("prime_sieve did not report its time:\n" + out)
    return float(m.group(1))


def prime_sieve_pair(binary):
    """What two vCPUs give the sieve here, for reference: a one-worker run alone (the faster of
    two), then two of them side by side. The vCPUs of a shared host may share a core's caches or
    be taken by the host now and then, so two runs side by side can each be slower than one
    alone. As noisy as the speedup itself, so an estimate, not a bound."""
    cmd = [binary, "--limit", "1000000000", "--processes", "1", "--no-serial"]
    alone = min(sieve_seconds(subprocess.run(cmd, check=True, capture_output=True,
                                             text=True).stdout) for _ in range(2))
    pair = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [p.communicate() for p in pair]  # both collected before either is judged
    for p, (out, err) in zip(pair, outs):
        if p.returncode != 0:
            sys.exit(f"prime_sieve failed ({p.returncode}):\n{out}{err}")
    # The pool shares segments out as workers free up, so the pair's mean is what it can reach.
    return 2 * alone / statistics.mean(sieve_seconds(out) for out, _ in outs)


def procpool_side(build):
    bench = os.path.join(build, "bench")
    pool = run_bench(os.path.join(bench, "pool_bench"), "-BM_IdlePoolCpu")
    idle = run_bench(os.path.join(bench, "pool_bench"), "BM_IdlePoolCpu", reps=1)
    shared = run_bench(os.path.join(bench, "shared_bench"), "BM_ValueLockedIncrement")
    startup = run_bench(os.path.join(bench, "startup_bench"), reps=5)
    kernel = run_bench(os.path.join(bench, "kernel_bench"))
    # How a program waits is settled per process, at run time: the worst of several fresh
    # processes shows whether some of them settle badly, which one process's median hides.
    fresh = [run_bench(os.path.join(bench, "pool_bench"), "^BM_ApplyRoundTrip/", reps=1)
             for _ in range(5)]
    with cpu_burners(2):
        loaded = run_bench(os.path.join(bench, "pool_bench"),
                           "^BM_ApplyRoundTrip")
    sieve = os.path.join(build, "examples", "prime_sieve")
    with cpu_burners(1):
        primes_loaded = prime_sieve_speedup(sieve)
    # A row by its name, or by its name and arguments ("name/...").
    g = lambda d, k: next(v for n, v in d.items() if n == k or n.startswith(k + "/"))  # noqa: E731
    res = {
        "round_trip": real_ns(g(pool, "BM_ApplyRoundTrip")) / 1e3,
        "round_trip_loaded": real_ns(g(loaded, "BM_ApplyRoundTrip")) / 1e3,
        "round_trip_worst": max(real_ns(g(f, "BM_ApplyRoundTrip")) for f in fresh) / 1e3,
        "threads8": g(pool, "BM_ApplyRoundTripThreads")["items_per_second"],
        "threads8_loaded": g(loaded, "BM_ApplyRoundTripThreads")["items_per_second"],
        "rt_p50": g(pool, "BM_RoundTripLatency")["p50_us"],
        "rt_p99": g(pool, "BM_RoundTripLatency")["p99_us"],
        "rt_p999": g(pool, "BM_RoundTripLatency")["p999_us"],
        "k_block_p50": g(kernel, "BM_PipeRoundTripBlockingLatency")["p50_us"],
        "k_block_p99": g(kernel, "BM_PipeRoundTripBlockingLatency")["p99_us"],
        "k_block_p999": g(kernel, "BM_PipeRoundTripBlockingLatency")["p999_us"],
        "map_chunk1": g(pool, "BM_MapChunk1")["items_per_second"],
        "imap_unordered": g(pool, "BM_ImapUnorderedChunk1")["items_per_second"],
        "map_auto": g(pool, "BM_MapAutoChunk")["items_per_second"],
        "args_64x1mib": g(pool, "BM_Args64x1MiB")["bytes_per_second"],
        "rt_64mib": g(pool, "BM_RoundTrip64MiB")["bytes_per_second"],
        "array_256": real_ns(g(pool, "BM_SharedArrayArgument/256")) / 1e3,
        "array_1": real_ns(g(pool, "BM_SharedArrayArgument/1")) / 1e3,
        "idle": g(idle, "BM_IdlePoolCpu")["cpu_percent"],
        "value": real_ns(g(shared, "BM_ValueLockedIncrement")),
        "k_block": real_ns(g(kernel, "BM_PipeRoundTripBlocking")) / 1e3,
        "k_poll": real_ns(g(kernel, "BM_PipeRoundTripPolling")) / 1e3,
        "k_small": g(kernel, "BM_PipeStreamSmall")["items_per_second"],
        "k_stream64k": g(kernel, "BM_PipeStreamBytes/0")["bytes_per_second"],
        "k_stream1m": g(kernel, "BM_PipeStreamBytes/1048576")["bytes_per_second"],
        "k_fork": real_ns(g(kernel, "BM_ForkExitWait")) / 1e6,
    }
    for m in ("fork", "spawn", "forkserver"):
        res[f"first_{m}"] = real_ns(g(startup, f"start_to_first_result/{m}")) / 1e6
        res[f"startstop_{m}"] = real_ns(g(startup, f"start_and_shutdown/{m}")) / 1e6
    res["primes"] = prime_sieve_speedup(sieve)
    res["primes_pair"] = prime_sieve_pair(sieve)
    res["primes_loaded"] = primes_loaded
    return res


# ---- the table -------------------------------------------------------------------------------

# key, workload, unit, scale (raw value -> unit), higher is better, target, target ratio
ROWS = [
    ("round_trip", "apply_async->get round trip, trivial task", "us", 1, False, 5, 34),
    ("round_trip_worst", "round trip, worst of 5 fresh processes", "us", 1, False, None, None),
    ("round_trip_loaded", "round trip, 2 CPU-burning processes beside it", "us", 1, False, None,
     2),
    ("threads8", "8 threads each apply_async->get, Pool(2)", "k tasks/s", 1e-3, True, None, 2),
    ("threads8_loaded", "8 threads, 2 CPU-burning processes beside it", "k tasks/s", 1e-3, True,
     None, 2),
    ("rt_p50", "round trip p50 (quiet)", "us", 1, False, None, None),
    ("rt_p99", "round trip p99 (quiet)", "us", 1, False, None, None),
    ("rt_p999", "round trip p99.9 (quiet)", "us", 1, False, None, None),
    ("map_chunk1", "map, chunksize 1, 200k trivial tasks", "M tasks/s", 1e-6, True, 1, 17),
    ("imap_unordered", "imap_unordered, chunksize 1, 200k tasks", "M tasks/s", 1e-6, True, 1, 17),
    ("map_auto", "map, automatic chunksize, 200k trivial tasks", "M tasks/s", 1e-6, True, 60, 10),
    ("args_64x1mib", "64 x 1 MiB arguments", "GB/s", 1e-9, True, 3, 6),
    ("rt_64mib", "64 MiB argument + result round trip", "GB/s", 1e-9, True, 2, 10),
    ("array_256", "shared Array of 256 MiB handed to a task", "us", 1, False, 50, None),
    ("array_1", "shared Array of 1 MiB handed to a task", "us", 1, False, 50, None),
    ("first_fork", "pool start to first result, fork", "ms", 1, False, 1.5, 12),
    ("first_spawn", "pool start to first result, spawn", "ms", 1, False, 5, 17),
    ("first_forkserver", "pool start to first result, forkserver", "ms", 1, False, 3, 20),
    ("startstop_fork", "pool start + shutdown, fork", "ms", 1, False, None, None),
    ("startstop_spawn", "pool start + shutdown, spawn", "ms", 1, False, None, None),
    ("startstop_forkserver", "pool start + shutdown, forkserver", "ms", 1, False, None, None),
    ("primes", "prime sieve to 10^9, speedup over one process", "x", 1, True, 1.85, None),
    ("primes_loaded", "prime sieve, one core busy elsewhere", "x", 1, True, 1.0, None),
    ("primes_pair", "prime sieve: 2 one-worker runs side by side", "x", 1, True, None, None),
    ("value", "Value lock + increment + unlock", "ns", 1, False, 25, 17),
    ("idle", "idle pool, CPU of workers + parent", "% core", 1, False, 1, None),
    ("k_block", "kernel: pipe round trip, blocking", "us", 1, False, None, None),
    ("k_poll", "kernel: pipe round trip, reader polling", "us", 1, False, None, None),
    ("k_small", "kernel: pipe, 256 small messages in flight", "M msgs/s", 1e-6, True, None, None),
    ("k_stream64k", "kernel: pipe streaming, 64 KiB buffer", "GB/s", 1e-9, True, None, None),
    ("k_stream1m", "kernel: pipe streaming, 1 MiB buffer", "GB/s", 1e-9, True, None, None),
    ("k_fork", "kernel: fork + exit + wait", "ms", 1, False, None, None),
    ("k_block_p50", "kernel: blocking pipe round trip p50", "us", 1, False, None, None),
    ("k_block_p99", "kernel: blocking pipe round trip p99", "us", 1, False, None, None),
    ("k_block_p999", "kernel: blocking pipe round trip p99.9", "us", 1, False, None, None),
]


def build_table(pp, py):
    table = []
    for key, name, unit, scale, higher, target, target_ratio in ROWS:
        v = pp[key] * scale
        p = py.get(key)
        p = p * scale if p is not None else None
        ratio = None
        if p:
            ratio = v / p if higher else p / v
        met = None
        if target is not None:
            met = v >= target if higher else v <= target
        if target_ratio is not None and ratio is not None:
            met = (met is None or met) and ratio >= target_ratio  # a ratio alone may be the target
        parts = []
        if target is not None:
            parts.append(f"{'>=' if higher else '<='} {target:g} {unit}")
        if target_ratio is not None:
            parts.append(f">= {target_ratio}x")
        tgt = ", ".join(parts)
        table.append({"workload": name, "value": v, "unit": unit,
                      "python": p, "ratio": ratio, "target": tgt,
                      "met": "" if met is None else ("yes" if met else "NO")})
    return table


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def print_table(table):
    head = ("workload", "procpool", "unit", "Python", "ratio", "target", "met")
    rows = [(r["workload"], fmt(r["value"]), r["unit"], fmt(r["python"]),
             "-" if r["ratio"] is None else f"{r['ratio']:.1f}x", r["target"], r["met"])
            for r in table]
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def write_csv(table, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0].keys()))
        w.writeheader()
        for r in table:
            w.writerow(r)


def read_csv(path):
    """A table as write_csv wrote it, numbers parsed back."""
    def num(x):
        return float(x) if x not in ("", None) else None
    with open(path, newline="") as f:
        return [dict(r, value=num(r["value"]), python=num(r["python"]), ratio=num(r["ratio"]))
                for r in csv.DictReader(f)]


def times_label(x, _pos=None):
    return f"{x:g}\u00d7"


def write_chart(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        print("no chart: install python3-matplotlib (apt-get install python3-matplotlib)",
              file=sys.stderr)
        return
    rows = [r for r in table if r["ratio"] is not None]
    names = [r["workload"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    y = range(len(rows))
    # Bars grow from 1x: to the right where procpool is faster, to the left (in red) where
    # Python is.
    ax.barh(y, [r - 1 for r in ratios], left=1, color=["#48c" if r >= 1 else "#c54" for r in ratios])
    for i, r in enumerate(ratios):
        ax.text(r, i, f" {r:.1f}\u00d7 " if r >= 1 else f"{r:.2f}\u00d7 ", va="center",
                ha="left" if r >= 1 else "right", fontsize=8)
    ax.set_yticks(list(y))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    # Whole decades from 1x, labelled as multiples (1x, 10x, 100x) rather than powers of ten;
    # 2x and 5x between them, so short bars can be read too.
    low = min(1.0, 10 ** math.floor(math.log10(min(ratios) / 1.6)))
    ax.set_xlim(low, 10 ** math.ceil(math.log10(max(ratios) * 1.6)))
    if low < 1:
        ax.axvline(1, color="#888", lw=0.8)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(times_label))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2, 5)))
    ax.xaxis.set_minor_formatter(FuncFormatter(times_label))
    ax.tick_params(axis="x", which="minor", labelsize=8, labelcolor="#444")
    ax.grid(axis="x", which="major", color="#ccc", lw=0.8)
    ax.grid(axis="x", which="minor", color="#eee", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel("times faster than Python's multiprocessing.Pool (log scale; below 1\u00d7: slower)")
    ax.set_title("procpool vs multiprocessing, measured in the same run", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default="build/release")
    ap.add_argument("--out")
    ap.add_argument("--plot-only", metavar="CSV",
                    help="run nothing: redraw the chart from a performance.csv written before")
    args = ap.parse_args()
    if args.plot_only:
        out = args.out or os.path.dirname(os.path.abspath(args.plot_only))
        os.makedirs(out, exist_ok=True)
        write_chart(read_csv(args.plot_only), os.path.join(out, "performance.png"))
        print(f"wrote {out}/performance.png")
        return
    out = args.out or os.path.join(args.build, "perf")
    os.makedirs(out, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().release}; Python {sys.version.split()[0]}",
          flush=True)
    pp = procpool_side(args.build)
    py = python_side()
    table = build_table(pp, py)
    print_table(table)
    write_csv(table, os.path.join(out, "performance.csv"))
    write_chart(table, os.path.join(out, "performance.png"))
    print(f"wrote {out}/performance.csv and {out}/performance.png")


if __name__ == "__main__":
    main()
