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
# A fork-started worker can hang inside ThreadSanitizer's own runtime: the child needs the
# runtime's stack-depot lock, which another thread of the parent held at the fork (fixed in LLVM
# in 2024, "[tsan] Lock/Unlock allocator and stacks on fork"; Debian 12's runtime predates it).
# A case that times out (only such a case) runs once more, here only: every other build runs
# the same suite without retries, so a hang of procpool's own still fails there.
exec "${norandom[@]}" ctest --preset tsan --repeat after-timeout:2
