#!/usr/bin/env bash
# Builds the libprocpool-dev .deb with CPack, unpacks it into a private prefix and builds the
# consumer in tests/package against that prefix: with CMake's find_package (g++, then clang with
# libc++) and with pkg-config and make. Unpacking (dpkg-deb -x) rather than dpkg -i leaves the
# system's package database and /usr alone, needs no clean-up, and cannot be fooled by headers
# from another procpool install. Usage: scripts/check-deb.sh [build dir]   (default: build/deb)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh make pkgconf
out="$(realpath -m "${1:-build/deb}")"

# Only the install rules matter: nothing is compiled.
cmake -S . -B "$out" -DPROCPOOL_BUILD_TESTS=OFF -DPROCPOOL_BUILD_EXAMPLES=OFF \
  -DPROCPOOL_BUILD_BENCH=OFF >/dev/null
rm -f "$out"/libprocpool-dev_*.deb
(cd "$out" && cpack -G DEB >/dev/null)
debs=("$out"/libprocpool-dev_*_all.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || { echo "expected one libprocpool-dev .deb in $out" >&2; exit 1; }
deb="${debs[0]}"
echo "built $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends

fail() { echo "check-deb: $*" >&2; exit 1; }
[ "$(dpkg-deb --field "$deb" Package)" = libprocpool-dev ] || fail "package name is not libprocpool-dev"
[ "$(dpkg-deb --field "$deb" Architecture)" = all ] || fail "architecture is not 'all'"
[ -z "$(dpkg-deb --field "$deb" Depends)" ] || fail "a header-only package should depend on nothing"

stage="$out/stage"
rm -rf "$stage"
dpkg-deb -x "$deb" "$stage"
prefix="$stage/usr"
for f in include/procpool/procpool.hpp share/cmake/procpool/procpoolConfig.cmake \
  share/cmake/procpool/procpoolTargets.cmake share/cmake/procpool/procpool.cpp \
  share/pkgconfig/procpool.pc; do
  [ -f "$prefix/$f" ] || fail "the package lacks /usr/$f"
done

# CMake: find_package(procpool) from the unpacked tree, into build dir $1 (more cmake args after).
consumer_cmake() {
  local dir="$out/$1"
  shift
  rm -rf "$dir"
  cmake -S tests/package -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" "$@" >/dev/null
  local found
  found="$(sed -n 's/^procpool_DIR:PATH=//p' "$dir/CMakeCache.txt")"
  [ "$found" = "$prefix/share/cmake/procpool" ] || fail "find_package used $found, not the package"
  cmake --build "$dir"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error
}
consumer_cmake consumer_cmake
# The same with clang and its own standard library, libc++ (the umbrella header, both modes).
# (The packages without a version follow Debian's default clang.)
scripts/install-deps.sh clang libc++-dev libc++abi-dev
consumer_cmake consumer_libcxx -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS=-stdlib=libc++

# pkg-config: only the unpacked tree is searched.
export PKG_CONFIG_LIBDIR="$prefix/share/pkgconfig"
unset PKG_CONFIG_PATH
echo "pkg-config --cflags --libs procpool: $(pkg-config --cflags --libs procpool)"
mkdir -p "$out/consumer_pc"
rm -f "$out/consumer_pc/consumer_pc"
make --no-print-directory -f tests/package/Makefile BUILD_DIR="$out/consumer_pc" check
echo "check-deb: the package works with find_package (libstdc++ and libc++) and with pkg-config"
