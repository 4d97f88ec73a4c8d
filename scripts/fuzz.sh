#!/usr/bin/env bash
# Builds the libFuzzer targets tests/fuzz/*_fuzz.cpp with clang++ (ASan + UBSan) and runs each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS: time per target (default 60). TARGET: a target name such as checkpoint_fuzz (default:
# every tests/fuzz/*_fuzz.cpp). Work goes to build-fuzz/<target>/: the binary, a corpus that
# grows across runs, the seeds, the dictionary, the log, and crash-* / leak-* / timeout-*
# artifacts when something is found (reproduce with: build-fuzz/<target>/<target> <artifact>).
#
# A target seeds itself: run with GRADSCOPE_FUZZ_SEED_DIR=<dir> it writes valid inputs there
# (and a libFuzzer dictionary to GRADSCOPE_FUZZ_DICT when set) and exits. Files in
# tests/fuzz/corpus/<target>/, if that folder exists, are added to the seeds.
#
# Without clang++ (or without its libFuzzer runtime) the script prints a notice and exits 0.
# Environment: FUZZ_CXX (default: clang++, else clang++-14..19), GRADSCOPE_FUZZ_DIR (default
# build-fuzz), GRADSCOPE_FUZZ_MAX_LEN (default 8192).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
seconds=${1:-60}
if (($# > 0)); then shift; fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2
  exit 2
fi
work=${GRADSCOPE_FUZZ_DIR:-$root/build-fuzz}
max_len=${GRADSCOPE_FUZZ_MAX_LEN:-8192}

cxx=${FUZZ_CXX:-}
if [[ -z "$cxx" ]]; then
  for candidate in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$candidate" >/dev/null 2>&1; then
      cxx=$candidate
      break
    fi
  done
fi
if [[ -z "$cxx" ]]; then
  echo "fuzz.sh: clang++ not found; skipping the fuzz targets (install clang to run them)"
  exit 0
fi

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I "$root/include")
if pkg-config --exists eigen3 2>/dev/null; then
  read -r -a eigen_flags <<<"$(pkg-config --cflags eigen3)"
  flags+=("${eigen_flags[@]}")
else
  flags+=(-I /usr/include/eigen3)
fi

mkdir -p "$work"
probe="$work/.probe"
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  >"$probe.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe.cpp" -o "$probe" >/dev/null 2>&1; then
  echo "fuzz.sh: $cxx cannot link -fsanitize=fuzzer (no libFuzzer runtime); skipping"
  exit 0
fi
rm -f "$probe" "$probe.cpp"

targets=("$@")
if ((${#targets[@]} == 0)); then
  for src in tests/fuzz/*_fuzz.cpp; do
    [[ -e "$src" ]] || continue
    name=$(basename "$src" .cpp)
    targets+=("$name")
  done
fi
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: no targets in tests/fuzz/*_fuzz.cpp"
  exit 0
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
failed=0
for name in "${targets[@]}"; do
  src="tests/fuzz/$name.cpp"
  if [[ ! -f "$src" ]]; then
    echo "fuzz.sh: no such target: $src" >&2
    exit 2
  fi
  dir="$work/$name"
  mkdir -p "$dir/corpus" "$dir/seeds"
  echo "==== $name: building with $cxx"
  "$cxx" "${flags[@]}" "$src" -o "$dir/$name" -lz  # zlib: the IDX reader

  echo "==== $name: seeding"
  rm -f "$dir/seeds"/* "$dir/$name.dict"
  GRADSCOPE_FUZZ_SEED_DIR="$dir/seeds" GRADSCOPE_FUZZ_DICT="$dir/$name.dict" \
    "$dir/$name" -runs=0 >"$dir/seed.log" 2>&1 || {
      echo "fuzz.sh: seeding $name failed:" >&2
      cat "$dir/seed.log" >&2
      exit 1
    }
  if [[ -d "tests/fuzz/corpus/$name" ]]; then
    cp -f "tests/fuzz/corpus/$name"/* "$dir/seeds/" 2>/dev/null || true
  fi
  dict=()
  if [[ -s "$dir/$name.dict" ]]; then dict=(-dict="$dir/$name.dict"); fi

  echo "==== $name: fuzzing for ${seconds}s ($(ls "$dir/seeds" | wc -l) seeds," \
       "$(ls "$dir/corpus" | wc -l) corpus inputs)"
  set +e
  "$dir/$name" "$dir/corpus" "$dir/seeds" "${dict[@]}" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/" >"$dir/fuzz.log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/fuzz.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$dir/fuzz.log" | tail -1 || true)
  if ((rc == 0)); then
    summary+=("$name: OK, ${runs:-?} executions in ${seconds}s, ${cov:-cov: ?}, peak RSS ${rss:-?} MB")
  else
    failed=1
    summary+=("$name: FAILED (exit $rc) after ${runs:-?} executions; see $dir/fuzz.log")
    tail -n 60 "$dir/fuzz.log"
    ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null || true
  fi
done

echo "==== summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
