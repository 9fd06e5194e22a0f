#!/usr/bin/env bash
# Installs the Debian packages procpool's build needs, and any named as arguments, when they are
# missing (as root, with apt-get); otherwise says what to install. Usage: scripts/install-deps.sh
# [package...]
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/catch2/catch.hpp ] || need+=(catch2)
[ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
[ -d /usr/include/cereal ] || need+=(libcereal-dev)
[ -f /usr/include/png.h ] || need+=(libpng-dev)          # the image example
[ -f /usr/include/jpeglib.h ] || need+=(libjpeg-dev)     # the image example
# procpool::mpi's tests run with both Open MPI and MPICH; its benchmark compares with mpi4py.
command -v mpiexec.openmpi >/dev/null || need+=(openmpi-bin)
command -v mpicxx.openmpi >/dev/null || need+=(libopenmpi-dev)
command -v mpiexec.mpich >/dev/null || need+=(mpich)
command -v mpicxx.mpich >/dev/null || need+=(libmpich-dev)
[ -d /usr/lib/python3/dist-packages/mpi4py ] || need+=(python3-mpi4py)  # for /usr/bin/python3
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "procpool needs these Debian packages: ${need[*]}" >&2
    echo "install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
