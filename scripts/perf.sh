#!/usr/bin/env bash
# Builds the release preset's benchmarks and prints procpool's performance table next to Python's
# multiprocessing.Pool and the raw kernel, all measured in one run (bench/compare.py); writes
# performance.csv and performance.png. Usage: scripts/perf.sh [OUT_DIR] (default: build/release/perf)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/release/perf}"

scripts/install-deps.sh python3 python3-matplotlib python3-numpy
cmake --preset release
# Only what bench/compare.py runs (the tests are not needed for it).
cmake --build --preset release -j "$(nproc)" \
  --target pool_bench shared_bench startup_bench kernel_bench prime_sieve
# Debian's interpreter: the one python3-matplotlib installs into.
py=/usr/bin/python3; [ -x "$py" ] || py=python3
"$py" bench/compare.py build/release --out "$out"
