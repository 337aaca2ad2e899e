#!/usr/bin/env bash
# Runs dim's whole default test suite: installs dependencies and builds
# (tools/setup.sh), runs every ctest (unit tests, integration tests against
# real trees and real daemons, fuzz corpora), then the unit tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer. .ci/run calls exactly this.
#
# Opt-in suites (slow): DIM_SLOW_TESTS=1 adds the tests labelled "slow"
# (long fuzzing, qemu boots, large trees). DIM_NO_SANITIZE=1 skips the
# sanitizer build. Extra ctest arguments may be given, e.g. -R roundtrip.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}

"$repo/tools/setup.sh"

labels=(-LE slow)
[[ ${DIM_SLOW_TESTS:-0} == 1 ]] && labels=()
(cd "$build_dir" && ctest --output-on-failure --timeout 1800 "${labels[@]}" "$@")

if [[ ${DIM_NO_SANITIZE:-0} != 1 && $# == 0 ]]; then
  asan_dir=${ASAN_BUILD_DIR:-$repo/build-asan}
  cmake -S "$repo" -B "$asan_dir" -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address,undefined > /dev/null
  make -C "$asan_dir" -j"$(nproc)" --no-print-directory unit_tests 2>&1 | grep -v '^\[' || true
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$asan_dir/tests/unit_tests"
fi
echo "test.sh: all tests passed"
