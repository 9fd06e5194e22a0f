#!/usr/bin/env bash
# Builds procpool and runs its whole test suite. On a fresh Debian 12 machine it first installs
# what is missing (as root, with apt-get). Usage: scripts/test.sh [preset]   (default: dev; which
# also runs the MPI suite with MPICH, through the mpich preset)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-dev}"

scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset"
# The MPI suite again with MPICH (the dev build ran it with Open MPI).
if [ "$preset" = dev ] && command -v mpicxx.mpich >/dev/null; then
  cmake --preset mpich
  cmake --build --preset mpich -j "$(nproc)"
  ctest --preset mpich
fi
