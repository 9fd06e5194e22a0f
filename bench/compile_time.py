#!/usr/bin/env python3
"""What including procpool costs at compile time.

Compiles (to an object file, no link) a few small programs several times at -O0 and -O2:
  baseline   std::async over a vector: what a program without procpool pays
  hello      procpool::Pool and map, the README's first example
  shared     an empty program that includes only <procpool/shared.hpp>
  queue      an empty program that includes only <procpool/queue.hpp>
  umbrella   an empty program that includes <procpool/procpool.hpp>
and prints, for each, the median wall and CPU (user + system) time, each also as a ratio to the
baseline's, and the compiler's peak memory (maximum resident set size of the
compiler and its subprocesses, the figure /usr/bin/time -v prints, read here with wait4).

Runs go round-robin over the programs so that a burst of load on a shared machine hits all of
them alike; CPU time is steadier than wall time there. Usage:
  bench/compile_time.py [--cxx g++] [--runs 5] [--opt O0,O2] [--flags '...']
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAMS = {
    "baseline": """
#include <future>
#include <numeric>
#include <vector>
int square(int x) { return x * x; }
int main() {
  std::vector<std::future<int>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(std::async(std::launch::async, square, i));
  long sum = 0;
  for (auto& f : futures) sum += f.get();
  return sum == 328350 ? 0 : 1;
}
""",
    "hello": """
#include <numeric>
#include <vector>
#include <procpool/procpool.hpp>
int square(int x) { return x * x; }
int main(int argc, char** argv) {
  procpool::init(argc, argv);
  procpool::Pool pool;
  std::vector<int> in(100);
  std::iota(in.begin(), in.end(), 0);
  auto squares = pool.map(square, in);
  long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  return sum == 328350 ? 0 : 1;
}
""",
    "shared": "#include <procpool/shared.hpp>\nint main() { return 0; }\n",
    "queue": "#include <procpool/queue.hpp>\nint main() { return 0; }\n",
    "umbrella": "#include <procpool/procpool.hpp>\nint main() { return 0; }\n",
}


def compile_once(cmd):
    """Runs one compilation; returns (wall seconds, CPU seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"compile_time: this failed ({proc.returncode}):\n  {' '.join(cmd)}\n{err}")
    # ru_maxrss covers the driver and the compiler proper it waited for (Linux: in KiB).
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"), help="compiler (default: $CXX or g++)")
    ap.add_argument("--runs", type=int, default=5, help="compilations per program and level (default 5)")
    ap.add_argument("--opt", default="O0,O2", help="optimization levels, comma-separated (default O0,O2)")
    ap.add_argument("--flags", default="", help="more compiler flags, e.g. '-stdlib=libc++'")
    args = ap.parse_args()
    if args.runs < 1:
        sys.exit("compile_time: --runs must be at least 1")
    levels = [o.strip().lstrip("-") for o in args.opt.split(",") if o.strip()]
    if not levels:
        sys.exit("compile_time: --opt names no optimization level")

    version = subprocess.run([args.cxx, "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        sys.exit(f"compile_time: cannot run the compiler '{args.cxx}'")
    print(f"compiler: {version.stdout.splitlines()[0]}  flags: -std=c++20 {args.flags}".rstrip())
    print(f"{args.runs} runs each, round-robin; machine load average: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory(prefix="procpool-compile-time-") as tmp:
        sources = {}
        for name, text in PROGRAMS.items():
            sources[name] = Path(tmp) / f"{name}.cpp"
            sources[name].write_text(text)

        def command(name, level):
            return ([args.cxx, "-std=c++20", f"-{level}", "-pthread", f"-I{ROOT / 'include'}"] +
                    args.flags.split() + ["-c", str(sources[name]), "-o", str(Path(tmp) / f"{name}.o")])

        results = {(n, lv): [] for lv in levels for n in PROGRAMS}
        for name in PROGRAMS:  # warm-up: the headers into the page cache, nothing recorded
            compile_once(command(name, levels[0]))
        for _ in range(args.runs):
            for level in levels:
                for name in PROGRAMS:
                    results[(name, level)].append(compile_once(command(name, level)))

    print()
    print(f"{'program':<10} {'opt':<4} {'wall s':>7} {'x base':>7} {'cpu s':>7} {'x base':>7} "
          f"{'peak MiB':>9}")
    for level in levels:
        base_wall = statistics.median(r[0] for r in results[("baseline", level)])
        base_cpu = statistics.median(r[1] for r in results[("baseline", level)])
        for name in PROGRAMS:
            runs = results[(name, level)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = statistics.median(r[2] for r in runs) / 1024
            print(f"{name:<10} {level:<4} {wall:>7.2f} {wall / base_wall:>6.2f}x {cpu:>7.2f} "
                  f"{cpu / base_cpu:>6.2f}x {rss:>9.0f}")


if __name__ == "__main__":
    main()
