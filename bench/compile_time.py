#!/usr/bin/env python3
"""What including procpool costs at compile time, header-only and in the compiled mode.

Compiles (to an object file, no link) a few small programs several times at -O0 and -O2:
  baseline     std::async over a vector: what a program without procpool pays
  hello        procpool::Pool and map, the README's first example (header-only, the default)
  hello/syntax the same with -fsyntax-only: parsing and template instantiation alone, no code
               generated; a floor for any header-only hello whatever its code generation costs
  hello/c      the same in the compiled mode (-DPROCPOOL_SEPARATE_COMPILATION; the engine is
               compiled once, in the `engine` row, not in this file)
  hello-pool/c the same including only <procpool/pool.hpp>, compiled mode
  shared       an empty program that includes only <procpool/shared.hpp>
  queue        an empty program that includes only <procpool/queue.hpp>
  umbrella     an empty program that includes <procpool/procpool.hpp>
  umbrella/c   the same in the compiled mode
  std-headers  an empty program including the standard and system headers procpool's headers
               include (all of them, as <procpool/procpool.hpp> does):
               the part of any procpool file's time that no change to procpool's own code removes
  engine       src/procpool.cpp, the compiled mode's one engine file (once per program)
and prints, for each, the median wall and CPU (user + system) time, each also as a ratio to the
baseline's, and the compiler's peak memory (maximum resident set size of the
compiler and its subprocesses, the figure /usr/bin/time -v prints, read here with wait4).

Runs go round-robin over the programs so that a burst of load on a shared machine hits all of
them alike; CPU time is steadier than wall time there. Usage:
  bench/compile_time.py [--cxx g++] [--runs 5] [--opt O0,O2] [--flags '...'] [--only a,b]
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
    "engine": (ROOT / "src" / "procpool.cpp").read_text(),
}
# The same program including only the pool's header.
PROGRAMS["hello-pool"] = PROGRAMS["hello"].replace("<procpool/procpool.hpp>", "<procpool/pool.hpp>")

SEPARATE = "-DPROCPOOL_SEPARATE_COMPILATION"
# Each row: (name, program, extra flags). "std-headers" is written at run time.
ROWS = [
    ("baseline", "baseline", []),
    ("hello", "hello", []),
    ("hello/syntax", "hello", ["-fsyntax-only"]),
    ("hello/c", "hello", [SEPARATE]),
    ("hello-pool/c", "hello-pool", [SEPARATE]),
    ("shared", "shared", []),
    ("queue", "queue", []),
    ("umbrella", "umbrella", []),
    ("umbrella/c", "umbrella", [SEPARATE]),
    ("std-headers", "std-headers", []),
    ("engine", "engine", [SEPARATE]),
]


def std_headers_program(cxx, flags):
    """An empty program including, by path, every non-procpool header that a procpool header
    includes directly (from the compiler's -H trace of the umbrella header)."""
    cmd = [cxx, "-std=c++20", "-pthread", f"-I{ROOT / 'include'}"] + flags + [
        "-H", "-fsyntax-only", "-x", "c++", "-"]
    trace = subprocess.run(cmd, input="#include <procpool/procpool.hpp>\n", capture_output=True,
                           text=True)
    if trace.returncode != 0:
        sys.exit(f"compile_time: the -H trace failed:\n{trace.stderr}")
    stack, headers = [], []
    for line in trace.stderr.splitlines():
        dots, _, path = line.partition(" ")
        if not dots or set(dots) != {"."}:
            continue
        stack[len(dots) - 1:] = [path]
        parent = stack[-2] if len(stack) > 1 else ""
        if "/procpool/" in parent and "/procpool/" not in path and path not in headers:
            headers.append(path)
    return "".join(f'#include "{h}"\n' for h in headers) + "int main() { return 0; }\n"


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
    ap.add_argument("--only", default="", help="rows to run, comma-separated (default: all)")
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

    rows = ROWS
    if args.only:
        wanted = ["baseline"] + [r.strip() for r in args.only.split(",") if r.strip()]
        unknown = set(wanted) - {r[0] for r in ROWS}
        if unknown:
            sys.exit(f"compile_time: no such row: {', '.join(sorted(unknown))}")
        rows = [r for r in ROWS if r[0] in wanted]
    programs = dict(PROGRAMS)
    if any(r[1] == "std-headers" for r in rows):
        programs["std-headers"] = std_headers_program(args.cxx, args.flags.split())

    with tempfile.TemporaryDirectory(prefix="procpool-compile-time-") as tmp:
        sources = {}
        for name, text in programs.items():
            sources[name] = Path(tmp) / f"{name}.cpp"
            sources[name].write_text(text)

        def command(row, level):
            name, program, extra = row
            obj = Path(tmp) / f"{name.replace('/', '_')}.o"
            return ([args.cxx, "-std=c++20", f"-{level}", "-pthread", f"-I{ROOT / 'include'}"] +
                    extra + args.flags.split() + ["-c", str(sources[program]), "-o", str(obj)])

        results = {(r[0], lv): [] for lv in levels for r in rows}
        for row in rows:  # warm-up: the headers into the page cache, nothing recorded
            compile_once(command(row, levels[0]))
        for _ in range(args.runs):
            for level in levels:
                for row in rows:
                    results[(row[0], level)].append(compile_once(command(row, level)))

    print()
    print(f"{'program':<12} {'opt':<4} {'wall s':>7} {'x base':>7} {'cpu s':>7} {'x base':>7} "
          f"{'peak MiB':>9}")
    for level in levels:
        base_wall = statistics.median(r[0] for r in results[("baseline", level)])
        base_cpu = statistics.median(r[1] for r in results[("baseline", level)])
        for name, _, _ in rows:
            runs = results[(name, level)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = statistics.median(r[2] for r in runs) / 1024
            print(f"{name:<12} {level:<4} {wall:>7.2f} {wall / base_wall:>6.2f}x {cpu:>7.2f} "
                  f"{cpu / base_cpu:>6.2f}x {rss:>9.0f}")


if __name__ == "__main__":
    main()
