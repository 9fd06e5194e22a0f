#!/usr/bin/env bash
# Builds the tsan preset and runs the fork-started suite (the unit.* tests) under ThreadSanitizer,
# or with `soak SECONDS` the soak program instead. Usage: scripts/tsan.sh [soak SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh libtsan2
cmake --preset tsan
cmake --build --preset tsan -j "$(nproc)"

# TSan maps its shadow memory at fixed addresses, which the address-space randomisation of some
# kernels (vm.mmap_rnd_bits above 28) collides with; setarch -R turns randomisation off for the
# processes below it. Where setarch may not do that (a container without the permission), run
# as is.
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi

if [ "${1:-}" = soak ]; then
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$PWD/tests/tsan.supp"
  exec "${norandom[@]}" build/tsan/tests/procpool_soak "${2:-60}"
fi
exec "${norandom[@]}" ctest --preset tsan
