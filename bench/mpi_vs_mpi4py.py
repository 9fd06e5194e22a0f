#!/usr/bin/env python3
"""procpool::mpi side by side with mpi4py.futures, same rank count, same machine, one run.

Usage: bench/mpi_vs_mpi4py.py [BUILD_DIR] [--ranks N] [--mpiexec PATH] [--quick]
                              [--procpool-args "--per-rank 1 --no-root"] ...

BUILD_DIR holds bench/mpi_bench (default: build/release). Both programs run under the same
mpiexec (default: mpiexec.openmpi, or mpiexec) with N ranks (default 3). mpi4py.futures uses rank
0 as its master and the others as workers. procpool runs twice by default: with default options
(workers on every rank, rank 0 too: what a program gets) and with one worker on each other rank
and none on rank 0 (the same workers as mpi4py). Prints each workload's values, the ratios
(higher is better for procpool) and the issue's target, judged on the default options.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

# name in mpi_bench, name in mpi4py's output, unit, higher_is_better, target ratio (or None)
ROWS = [
    ("round_trip", "round_trip", "us", False, 10.0),
    ("map_chunk1", "map_chunk1", "tasks/s", True, 20.0),
    ("map_auto", "map_chunk1000", "tasks/s", True, 10.0),
    ("args_64x1MiB", "args_64x1MiB", "GB/s", True, 3.0),
    ("round_trip_64MiB", "round_trip_64MiB", "GB/s", True, None),
]
LABELS = {
    "round_trip": "apply_async -> get round trip",
    "map_chunk1": "map, chunksize 1, trivial tasks",
    "map_auto": "map, automatic chunks (mpi4py: chunksize 1000), 1M tasks",
    "args_64x1MiB": "64 x 1 MiB arguments",
    "round_trip_64MiB": "64 MiB argument and result",
}


def run(cmd, env):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}")
    values = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\w+) ([0-9.]+) ", line + " ")
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir", nargs="?", default="build/release")
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--mpiexec", default=shutil.which("mpiexec.openmpi") or "mpiexec")
    ap.add_argument("--python", default="/usr/bin/python3", help="a Python with mpi4py")
    ap.add_argument("--procpool-args", action="append",
                    help="mpi_bench's arguments for one procpool run (may be repeated; default: "
                         "'' and '--per-rank 1 --no-root')")
    ap.add_argument("--quick", action="store_true", help="smaller mpi4py runs")
    a = ap.parse_args()
    exe = os.path.join(a.build_dir, "bench", "mpi_bench")
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"{exe} not found: build the mpi_bench target first")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_hwloc_base_binding_policy="none",
               HYDRA_LAUNCHER="fork")
    base = [a.mpiexec, "-n", str(a.ranks)]
    configs = a.procpool_args if a.procpool_args else ["", "--per-rank 1 --no-root"]
    ours = [run(base + [exe] + c.split(), env) for c in configs]
    theirs = run(base + [a.python, "-m", "mpi4py.futures",
                         os.path.join(here, "mpi4py_futures_bench.py")]
                 + (["--quick"] if a.quick else []), env)
    names = [f"procpool {c}" if c else "procpool, default options" for c in configs]
    print(f"\n{a.ranks} ranks ({os.path.basename(a.mpiexec)}); the target is judged on the first "
          "procpool column")
    print("| workload | " + " | ".join(names) + " | mpi4py.futures | ratios | target |")
    print("|---|" + "---|" * len(names) + "---|---|---|")
    ok = True
    for name, other, unit, higher, target in ROWS:
        if other not in theirs or any(name not in o for o in ours):
            continue
        y = theirs[other]
        ratios = [(o[name] / y if higher else y / o[name]) for o in ours]
        met = "" if target is None else (" met" if ratios[0] >= target else " NOT met")
        ok = ok and (target is None or ratios[0] >= target)
        tgt = "" if target is None else f">= {target:g}x{met}"
        vals = " | ".join(f"{o[name]:g} {unit}" for o in ours)
        rs = " / ".join(f"{r:.2f}x" for r in ratios)
        print(f"| {LABELS[name]} | {vals} | {y:g} {unit} | {rs} | {tgt} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
