#!/usr/bin/env bash
# Builds and runs everything CI checks:
#   1. dependencies            scripts/install-deps.sh
#   2. release                 build/: tests, examples and benchmarks; ctest
#   2b. docs                   scripts/check-docs.sh: the C++ blocks of README.md and docs/*.md
#                              compiled and run
#   3. sanitizers              build-asan/: tests with ASan + UBSan; ctest
#   4. packaging               install to build/install-prefix (headers and gradscope::compiled),
#                              then the two consumer projects, built with -Werror: header-only and
#                              on gradscope::compiled, with and without -march=native
#   5. fuzzing                 scripts/fuzz.sh: the checkpoint loader for 60 s, the IDX reader for
#                              30 s (libFuzzer, clang only)
#   6. benchmarks (quick)      scripts/bench.sh --quick: every benchmark runs once and reports no
#                              error (about 2 minutes; GRADSCOPE_TEST_BENCH=0 skips it)
# GRADSCOPE_TEST_SKIP_ASAN=1 skips step 3 for quick local iteration. GRADSCOPE_JOBS sets the
# build parallelism (default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
jobs=${GRADSCOPE_JOBS:-2}
start_all=$SECONDS
section=""
section_start=$SECONDS
timings=()

banner() {
  finish_section
  section=$1
  section_start=$SECONDS
  printf '\n==================== %s ====================\n' "$section"
}

finish_section() {
  if [[ -n "$section" ]]; then
    timings+=("$section: $((SECONDS - section_start))s")
  fi
}

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    printf '\n==================== FAILED ====================\n'
    echo "test.sh: FAILED in section '${section}' (exit code $rc) after $((SECONDS - start_all))s"
  fi
}
trap on_exit EXIT

expected_version=$(sed -n 's/^project(gradscope VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)

# Runs a consumer program and checks that it prints the gradscope version.
check_prints_version() {
  local output
  output=$("$1")
  echo "$output"
  if ! grep -q "gradscope ${expected_version}" <<<"$output"; then
    echo "test.sh: '$1' did not print 'gradscope ${expected_version}'" >&2
    return 1
  fi
}

banner "dependencies"
./scripts/install-deps.sh

banner "release build and tests (build/)"
cmake -S . -B build \
  -DCMAKE_BUILD_TYPE=Release \
  -DGRADSCOPE_BUILD_TESTS=ON -DGRADSCOPE_BUILD_EXAMPLES=ON -DGRADSCOPE_BUILD_BENCHMARKS=ON \
  -DGRADSCOPE_SANITIZE=OFF
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

banner "docs: code blocks compiled and run"
GRADSCOPE_DOCS_JOBS=$jobs ./scripts/check-docs.sh

if [[ "${GRADSCOPE_TEST_SKIP_ASAN:-0}" == "1" ]]; then
  banner "sanitizers: SKIPPED (GRADSCOPE_TEST_SKIP_ASAN=1)"
else
  banner "sanitizer build and tests (build-asan/)"
  # -O1 -g1: the usual optimisation level for sanitizer runs (at -O2 -g this build takes 4x
  # longer), with line tables for the stack traces.
  cmake -S . -B build-asan \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DGRADSCOPE_SANITIZE=ON -DGRADSCOPE_NATIVE=OFF -DGRADSCOPE_BUILD_COMPILED=OFF \
    -DGRADSCOPE_BUILD_TESTS=ON -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=OFF
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

banner "packaging: install + find_package consumer"
prefix="$root/build/install-prefix"
rm -rf "$prefix" build/consumer-find-package build/consumer-add-subdirectory
cmake --install build --prefix "$prefix"
cmake -S tests/consumer/find_package -B build/consumer-find-package \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
cmake --build build/consumer-find-package -j "$jobs"
check_prints_version build/consumer-find-package/consumer
check_prints_version build/consumer-find-package/consumer_compiled
check_prints_version build/consumer-find-package/consumer_library
OMP_NUM_THREADS=2 check_prints_version build/consumer-find-package/consumer_threads
# The README's example, header-only and on gradscope::compiled, with and without -march=native
# (each built with -Werror): it trains XOR and prints the gradient report.
for variant in gradscope_default gradscope_native compiled_default compiled_native; do
  out=$(build/consumer-find-package/readme_$variant)
  if ! grep -q '^verdict: ' <<<"$out"; then
    echo "$out"
    echo "test.sh: readme_$variant did not print a verdict" >&2
    exit 1
  fi
  echo "readme_$variant: $(grep '^verdict: ' <<<"$out")"
done

# The MPI component, when this build has it: find_package(gradscope COMPONENTS dist), two ranks.
# The package config is under lib/ with gradscope::compiled (the default), else under share/.
if find "$prefix" -name gradscopeDistTargets.cmake | grep -q .; then
  banner "packaging: find_package(gradscope COMPONENTS dist) consumer, mpiexec -n 2"
  rm -rf build/consumer-dist
  # Unoptimised: a link-and-run check, compiled in a fraction of the time.
  cmake -S tests/consumer/dist -B build/consumer-dist \
    -DCMAKE_BUILD_TYPE= -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build build/consumer-dist -j "$jobs"
  mpi_flags=()  # Open MPI: more ranks than free cores, and root, need saying
  if mpiexec --version 2>/dev/null | grep -Eq "Open MPI|OpenRTE"; then
    mpi_flags+=(--oversubscribe)
    [[ $(id -u) -eq 0 ]] && mpi_flags+=(--allow-run-as-root)
  fi
  check_prints_version_mpi() { mpiexec -n 2 "${mpi_flags[@]}" build/consumer-dist/consumer_dist; }
  check_prints_version check_prints_version_mpi
else
  echo "test.sh: no MPI component installed (MPI not found): the dist consumer is skipped"
fi

banner "packaging: add_subdirectory consumer"
cmake -S tests/consumer/add_subdirectory -B build/consumer-add-subdirectory \
  -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_SOURCE_DIR="$root"
cmake --build build/consumer-add-subdirectory -j "$jobs"
check_prints_version build/consumer-add-subdirectory/consumer

# GRADSCOPE_FUZZ_SECONDS, when set, replaces both times.
banner "fuzzing (libFuzzer: checkpoint loader 60 s, IDX reader 30 s)"
./scripts/fuzz.sh "${GRADSCOPE_FUZZ_SECONDS:-60}" checkpoint_fuzz
./scripts/fuzz.sh "${GRADSCOPE_FUZZ_SECONDS:-30}" idx_fuzz

# The release build above already compiles every benchmark; this runs each once, so a benchmark
# that errors (a failed cross-check, a skipped step) fails the run.
if [[ "${GRADSCOPE_TEST_BENCH:-1}" == "1" ]]; then
  banner "benchmarks (quick)"
  ./scripts/bench.sh --quick
fi

finish_section
section=""
printf '\n==================== SUMMARY ====================\n'
printf '  %s\n' "${timings[@]}"
echo "test.sh: ALL PASSED in $((SECONDS - start_all))s"
