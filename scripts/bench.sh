#!/usr/bin/env bash
# Builds and runs gradscope's benchmarks and reports them (docs/benchmarks.md says what each is).
#
#   scripts/bench.sh            full run: Release build in build-bench/, every bench_* program with
#                               5 repetitions (medians), an OpenMP build (build-bench-omp/) of
#                               bench_mlp_train run with 1 and 2 Eigen threads, peak memory of a
#                               200-step net-B run, compile times; prints the tables and rewrites
#                               them in docs/benchmarks.md between <!-- bench:begin --> and
#                               <!-- bench:end -->.
#   scripts/bench.sh --quick    smoke run (scripts/test.sh uses it): every benchmark once with a
#                               tiny --benchmark_min_time; fails if one reports an error. Reuses
#                               build/ (test.sh's release build) when it has the benchmarks.
# Options (full mode): --no-openmp   skip the OpenMP build and the thread comparison
#                      --no-docs     print the tables, leave docs/benchmarks.md alone
#                      --filter RE   pass --benchmark_filter=RE to every program (implies --no-docs)
#                      --tables-only  no build, no run: regenerate the report (and the docs) from
#                                     the results of the last full run (build-bench/bench-results/)
# Environment: GRADSCOPE_JOBS build parallelism (default 2), GRADSCOPE_BENCH_REPETITIONS (5),
# GRADSCOPE_BENCH_BUILD_DIR (build directory to use instead of build-bench/ or build/),
# GRADSCOPE_BENCH_PROGRAMS (e.g. "bench_mlp_train bench_ops": run only these; default every
# bench/*.bench.cpp).
# Needs: cmake, a C++20 compiler, Google Benchmark, awk. Optional: /usr/bin/time (Debian `time`)
# for peak memory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
jobs=${GRADSCOPE_JOBS:-2}
repetitions=${GRADSCOPE_BENCH_REPETITIONS:-5}

quick=0
openmp=1
docs=1
filter=""
tables_only=0
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --no-openmp) openmp=0 ;;
    --no-docs) docs=0 ;;
    --filter) filter=$2; docs=0; shift ;;
    --tables-only) tables_only=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

bench_names=()
if [[ -n "${GRADSCOPE_BENCH_PROGRAMS:-}" ]]; then
  read -r -a bench_names <<<"$GRADSCOPE_BENCH_PROGRAMS"
else
  for f in bench/*.bench.cpp; do
    b=$(basename "$f" .bench.cpp)
    bench_names+=("bench_$b")
  done
fi

# ---------------------------------------------------------------- build
configure_and_build() {  # dir, extra cmake args...
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_TESTS=OFF \
    -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" --target "${bench_names[@]}"
}

if ((tables_only)); then
  build=${GRADSCOPE_BENCH_BUILD_DIR:-build-bench}
elif [[ -n "${GRADSCOPE_BENCH_BUILD_DIR:-}" ]]; then
  build=$GRADSCOPE_BENCH_BUILD_DIR  # an explicit choice wins (configured here if need be)
  configure_and_build "$build"
elif ((quick)); then
  build=build-bench
  if [[ -f build/CMakeCache.txt ]] && grep -q '^GRADSCOPE_BUILD_BENCHMARKS:BOOL=ON' build/CMakeCache.txt &&
    grep -q '^CMAKE_BUILD_TYPE:STRING=Release' build/CMakeCache.txt; then
    build=build  # scripts/test.sh's release build: the benchmarks are already built there
    cmake -S . -B build >/dev/null  # re-glob bench/*.bench.cpp, keep every cached option
    cmake --build build -j "$jobs" --target "${bench_names[@]}"
  else
    configure_and_build build-bench
  fi
else
  build=build-bench
  configure_and_build build-bench
fi

results=$build/bench-results
if ((tables_only)); then
  [[ -d $results ]] || { echo "bench.sh: no results in $results: run scripts/bench.sh first" >&2; exit 1; }
else
  rm -rf "$results"
  mkdir -p "$results"
fi

# ---------------------------------------------------------------- run
run_bench() {  # program, json name, extra args...
  local prog=$1 out=$2
  shift 2
  local args=(--benchmark_out="$results/$out.json" --benchmark_out_format=json)
  if ((quick)); then
    args+=(--benchmark_min_time=0.01)
  else
    args+=(--benchmark_repetitions="$repetitions" --benchmark_report_aggregates_only=true)
  fi
  [[ -n "$filter" ]] && args+=(--benchmark_filter="$filter")
  echo "---- $prog $* ${args[*]}"
  "$prog" "${args[@]}" "$@"
}

# A program that crashes is reported at the end; the others still run.
failed=()
((tables_only)) || for b in "${bench_names[@]}"; do
  extra=()
  # Single ops are short and many: 0.1 s per repetition is plenty (the step benchmarks keep 0.5 s).
  [[ $b == bench_ops ]] && ((!quick)) && extra=(--benchmark_min_time=0.1)
  if ! run_bench "$build/bench/$b" "$b" "${extra[@]}"; then
    failed+=("$b")
    rm -f "$results/$b.json"  # possibly truncated
  fi
done

# Fail the smoke run when a benchmark skipped itself with an error (a wrong result, a NaN).
errors=$(grep -l '"error_occurred": true' "$results"/*.json 2>/dev/null || true)
if [[ -n "$errors" ]]; then
  echo "bench.sh: a benchmark reported an error in: $errors" >&2
  grep -h '"error_message"' "$results"/*.json >&2 || true
  exit 1
fi

if ((${#failed[@]})); then
  echo "bench.sh: benchmark program(s) failed (crashed or exited non-zero): ${failed[*]}" >&2
  ((quick)) && exit 1
fi

# ---------------------------------------------------------------- JSON -> rows
# One line per number: <json file> TAB <run_name> TAB <aggregate or "single"> TAB <key> TAB <value>,
# and <file> TAB context TAB - TAB <key> TAB <value> for the context block. Google Benchmark's JSON
# puts one key per line, which is all this relies on.
json_rows() {
  awk -v file="$(basename "$1" .json)" '
    function unq(s) { gsub(/^[ \t]*"|"[ \t]*,?[ \t]*$/, "", s); return s }
    /"context": \{/ { ctx = 1; next }
    ctx && /^  \},?$/ { ctx = 0; next }
    ctx && /^    "/ {
      line = $0; sub(/^[ \t]*"/, "", line); k = line; sub(/".*/, "", k)
      v = line; sub(/^[^"]*": /, "", v); sub(/,$/, "", v); gsub(/"/, "", v)
      print file "\tcontext\t-\t" k "\t" v; next
    }
    /^    \{$/ { n = 0; run = ""; agg = "single"; delete keys; delete vals; next }
    /^    \}/ {
      if (run != "") for (i = 1; i <= n; i++) print file "\t" run "\t" agg "\t" keys[i] "\t" vals[i]
      next
    }
    /^      "/ {
      line = $0; sub(/^[ \t]*"/, "", line); k = line; sub(/".*/, "", k)
      v = line; sub(/^[^"]*": /, "", v); sub(/,$/, "", v)
      if (k == "run_name") { run = unq(v); sub(/\/real_time$/, "", run); next }
      if (k == "aggregate_name") { agg = unq(v); next }
      if (v ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ || k == "time_unit" || k == "error_message") {
        gsub(/"/, "", v); keys[++n] = k; vals[n] = v
      }
    }' "$1"
}

rows=$results/rows.tsv
: >"$rows"
for j in "$results"/bench_*.json; do json_rows "$j" >>"$rows"; done

# ---------------------------------------------------------------- tables
# The value of <key> for <run> at aggregate <agg> (median in full mode, single in quick mode).
agg=median
((quick)) && agg=single

# mlp_train: one row per net and batch.
mlp_table() {  # rows file, file stem
  awk -F'\t' -v stem="$2" -v agg="$agg" -v peak="$3" '
    $1 == stem && $3 == agg {
      v[$2, $4] = $5
      if ($2 ~ /^mlp_train\//) {
        split($2, p, "/"); id = p[2] "\t" p[3]
        if (!(id in seen)) { seen[id] = 1; order[++n] = id }
      }
    }
    function fmt(x, d) { return x == "" ? "-" : sprintf("%." d "f", x) }
    function k(x) { return x == "" ? "-" : (x >= 1000 ? sprintf("%.1fk", x / 1000) : sprintf("%.0f", x)) }
    END {
      print "| net | batch | gradscope samples/s | reference samples/s | ours/ref (separate) | ours/ref (interleaved) | GFLOP/s ours / ref | % of FMA peak (ours) | allocs/step ours / ref | mallocs/step ours / ref | target | met |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
      for (i = 1; i <= n; i++) {
        split(order[i], c, "\t"); base = "mlp_train/" c[1] "/" c[2] "/"
        g = v[base "gradscope", "samples/s"]; r = v[base "reference", "samples/s"]
        sep = (g != "" && r != "" && r > 0) ? g / r : ""
        q = v[base "ratio", "ratio"]
        b = c[2]; sub(/batch:/, "", b)
        target = ""
        if (c[1] == "A" && b == 10) target = 0.60
        if (c[1] ~ /[BCDE]/ && b == 128) target = 0.90
        met = target == "" ? "" : (q != "" && q >= target ? "yes" : "**no**")
        gf = v[base "gradscope", "GFLOP/s"]
        pk = (peak != "" && gf != "") ? sprintf("%.0f%%", 100 * gf / peak) : "-"
        printf "| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s / %s | %s / %s | %s | %s |\n", c[1], b, k(g), k(r),
          fmt(sep, 2), fmt(q, 2), fmt(gf, 1), fmt(v[base "reference", "GFLOP/s"], 1), pk,
          fmt(v[base "gradscope", "allocs/step"], 2), fmt(v[base "reference", "allocs/step"], 2),
          fmt(v[base "gradscope", "mallocs/step"], 1), fmt(v[base "reference", "mallocs/step"], 1),
          target == "" ? "-" : ">= " target, met
      }
    }' "$1"
}

# Thread comparison (OpenMP build): interleaved ratio and throughputs per thread count.
threads_table() {  # rows file, then stems (one per thread count)
  local f=$1
  shift
  awk -F'\t' -v agg="$agg" -v stems="$*" '
    BEGIN { ns = split(stems, st, " ") }
    $3 == agg && $2 ~ /\/ratio$/ {
      v[$1, $2, $4] = $5
      if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
    }
    $2 == "context" && $4 == "eigen_threads" { th[$1] = $5 }
    function k(x) { return x == "" ? "-" : (x >= 1000 ? sprintf("%.1fk", x / 1000) : sprintf("%.0f", x)) }
    END {
      printf "| net | batch |"; for (s = 1; s <= ns; s++) printf " %s thread(s): ours / ref samples/s, ratio |", th[st[s]]
      print ""; printf "|---|---|"; for (s = 1; s <= ns; s++) printf "---:|"; print ""
      for (i = 1; i <= n; i++) {
        split(order[i], p, "/"); b = p[3]; sub(/batch:/, "", b)
        printf "| %s | %s |", p[2], b
        for (s = 1; s <= ns; s++) {
          r = v[st[s], order[i], "ratio"]
          printf " %s / %s, %s |", k(v[st[s], order[i], "gradscope_samples/s"]),
            k(v[st[s], order[i], "reference_samples/s"]), r == "" ? "-" : sprintf("%.2f", r)
        }
        print ""
      }
    }' "$f"
}

# ops: gradscope and eigen side by side.
ops_table() {
  awk -F'\t' -v agg="$agg" '
    $1 == "bench_ops" && $3 == agg && ($4 == "cpu_time" || $4 == "allocs/iter") {
      split($2, p, "/"); id = p[2] "\t" p[3] "\t" p[5]
      if (!(id in seen)) { seen[id] = 1; order[++n] = id }
      v[id, p[4], $4] = $5
    }
    END {
      print "| op | shape | pass | gradscope us | eigen us | ours/eigen throughput | allocs/iter |"
      print "|---|---|---|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) {
        split(order[i], c, "\t"); g = v[order[i], "gradscope", "cpu_time"]; e = v[order[i], "eigen", "cpu_time"]
        a = v[order[i], "gradscope", "allocs/iter"]
        printf "| %s | %s | %s | %.2f | %.2f | %s | %s |\n", c[1], c[2], c[3], g, e,
          (g > 0 ? sprintf("%.2f", e / g) : "-"), (a == "" ? "-" : sprintf("%.2f", a))
      }
    }' "$rows"
}

# Any other program: name, median CPU time, counters.
generic_table() {  # stem
  awk -F'\t' -v stem="$1" -v agg="$agg" '
    $1 == stem && $3 == agg {
      if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
      if ($4 == "cpu_time") t[$2] = $5
      else if ($4 == "time_unit") u[$2] = $5
      else if ($4 !~ /^(real_time|iterations|repetitions|repetition_index|threads|family_index|per_family_instance_index)$/)
        c[$2] = c[$2] sprintf(" %s=%.4g", $4, $5)
    }
    END {
      print "| benchmark | CPU time | counters |"; print "|---|---:|---|"
      for (i = 1; i <= n; i++) printf "| %s | %.4g %s |%s |\n", order[i], t[order[i]], u[order[i]], c[order[i]]
    }' "$rows"
}

peak_gflops=$(awk -F'\t' -v agg="$agg" '$1 == "bench_peak" && $3 == agg && $4 == "GFLOP/s" && $5 > m { m = $5 } END { if (m) print m }' "$rows")

# ---------------------------------------------------------------- quick mode ends here
if ((quick)); then
  echo
  echo "==== mlp_train (smoke run: one short measurement, not for reading)"
  mlp_table "$rows" bench_mlp_train "$peak_gflops"
  echo "bench.sh --quick: all ${#bench_names[@]} benchmark programs ran without errors"
  exit 0
fi

# ---------------------------------------------------------------- OpenMP: 1 and 2 threads
if ((openmp && !tables_only)); then
  echo "---- OpenMP build (build-bench-omp/, -fopenmp) for the thread comparison"
  if cmake -S . -B build-bench-omp -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_TESTS=OFF \
    -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=ON \
    -DCMAKE_CXX_FLAGS=-fopenmp -DCMAKE_EXE_LINKER_FLAGS=-fopenmp >/dev/null &&
    cmake --build build-bench-omp -j "$jobs" --target bench_mlp_train; then
    for t in 1 2; do
      # (with more than one thread the names end in /real_time: no $ in the filter)
      OMP_NUM_THREADS=$t OMP_PROC_BIND=close run_bench build-bench-omp/bench/bench_mlp_train \
        "omp_threads_$t" --benchmark_filter="${filter:-/ratio}" || true
    done
  else
    echo "bench.sh: the OpenMP build failed; thread comparison skipped" >&2
  fi
fi
thread_stems=()
for t in 1 2; do
  if [[ -s $results/omp_threads_$t.json ]]; then
    json_rows "$results/omp_threads_$t.json" >>"$rows"
    thread_stems+=("omp_threads_$t")
  fi
done

# ---------------------------------------------------------------- peak memory
cxx=$(awk -F= '/^CMAKE_CXX_COMPILER:/ { print $2 }' "$build/CMakeCache.txt")
flags_file=$build/bench/CMakeFiles/bench_mlp_train.dir/flags.make
cxx_flags=$(sed -n 's/^CXX_FLAGS = //p' "$flags_file")
cxx_defines=$(sed -n 's/^CXX_DEFINES = //p' "$flags_file")
# peak_memory.cpp is compiled on its own, header-only: not against the shared instantiation unit.
cxx_defines=${cxx_defines//-DGRADSCOPE_EXTERN_TEMPLATES/}
cxx_includes=$(sed -n 's/^CXX_INCLUDES = //p' "$flags_file")

if ((tables_only)); then
  :
elif [[ -x /usr/bin/time ]]; then
  echo "---- peak memory: 200 steps of net B at batch 128"
  # shellcheck disable=SC2086
  "$cxx" $cxx_defines $cxx_includes $cxx_flags bench/peak_memory.cpp -o "$build/peak_memory"
  for impl in gradscope reference; do
    /usr/bin/time -v "$build/peak_memory" "$impl" 200 2>"$results/peak_$impl.txt"
    kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$results/peak_$impl.txt")
    echo "| $impl | $(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }') MiB |" >>"$results/peak.md"
  done
else
  echo "bench.sh: /usr/bin/time not found (Debian package 'time'): peak memory skipped" >&2
fi

# ---------------------------------------------------------------- compile times
# g++ -O2 of a file, wall and CPU (user + sys) seconds, best of 3 (the machine may be shared).
compile_seconds() {  # source file, extra compiler flags...
  local best_wall="" best_cpu="" out src=$1
  shift
  for _ in 1 2 3; do
    # shellcheck disable=SC2086
    out=$({ /usr/bin/time -f '%e %U %S' "$cxx" -std=c++20 -O2 $cxx_includes "$@" -c "$src" -o /dev/null; } 2>&1 | tail -1)
    best_wall=$(awk -v a="$best_wall" -v b="${out%% *}" 'BEGIN { print (a == "" || b < a) ? b : a }')
    best_cpu=$(awk -v a="$best_cpu" -v o="$out" 'BEGIN { split(o, x, " "); c = x[2] + x[3]; print (a == "" || c < a) ? c : a }')
  done
  echo "$best_wall $best_cpu"
}
if ((tables_only)); then
  :
elif [[ -x /usr/bin/time ]]; then
  echo "---- compile times (g++ -O2, best of 3)"
  tmp=$(mktemp -d)
  printf '#include <gradscope/gradscope.hpp>\nint main() { return 0; }\n' >"$tmp/umbrella.cpp"
  printf '#include <Eigen/Core>\nint main() { return 0; }\n' >"$tmp/eigen_core.cpp"
  read -r w c < <(compile_seconds "$tmp/umbrella.cpp")
  echo "| \`#include <gradscope/gradscope.hpp>\` alone | $w s | $c s | <= 3 s |" >>"$results/compile.md"
  read -r w c < <(compile_seconds "$tmp/eigen_core.cpp")
  echo "| \`#include <Eigen/Core>\` alone (for scale) | $w s | $c s | - |" >>"$results/compile.md"
  if [[ -f examples/mnist_mlp.cpp ]]; then
    read -r w c < <(compile_seconds examples/mnist_mlp.cpp)
    echo "| examples/mnist_mlp.cpp, header-only | $w s | $c s | <= 8 s |" >>"$results/compile.md"
    read -r w c < <(compile_seconds examples/mnist_mlp.cpp -DGRADSCOPE_EXTERN_TEMPLATES)
    echo "| examples/mnist_mlp.cpp with \`GRADSCOPE_EXTERN_TEMPLATES\` | $w s | $c s | <= 8 s |" >>"$results/compile.md"
    printf '#define GRADSCOPE_EXTERN_TEMPLATES\n#include <gradscope/instantiate.hpp>\n' >"$tmp/instantiate.cpp"
    read -r w c < <(compile_seconds "$tmp/instantiate.cpp")
    echo "| \`<gradscope/instantiate.hpp>\` (once per program, float and double) | $w s | $c s | - |" >>"$results/compile.md"
  else
    echo "| examples/mnist_mlp.cpp | (not in the tree yet) | - | <= 8 s |" >>"$results/compile.md"
  fi
  rm -rf "$tmp"
fi

# ---------------------------------------------------------------- report
cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
cores=$(nproc)
compiler=$("$cxx" --version | head -1)
ctx() { awk -F'\t' -v k="$1" '$1 == "bench_mlp_train" && $2 == "context" && $4 == k { print $5; exit }' "$rows"; }

report=$results/report.md
{
  echo "Measured $(date -u +%Y-%m-%d) with \`./scripts/bench.sh\` (medians of $repetitions repetitions)."
  echo
  echo "- Machine: ${cpu_model:-unknown CPU}, $cores cores (\`nproc\`), load average at the start of the mlp_train run: $(ctx load_avg | tr -d '[]')"
  echo "- Compiler: $compiler; flags: \`$cxx_flags\`"
  echo "- Eigen $(ctx eigen_version), SIMD: $(ctx eigen_simd); OpenMP: $(ctx openmp), Eigen::nbThreads() = $(ctx eigen_threads)"
  [[ -n "$peak_gflops" ]] && echo "- fp32 FMA peak of one core (bench_peak, best chain count): $(printf '%.1f' "$peak_gflops") GFLOP/s"
  echo
  echo "### Training step, one thread (bench_mlp_train)"
  echo
  mlp_table "$rows" bench_mlp_train "$peak_gflops"
  if ((${#thread_stems[@]})); then
    echo
    echo "### One and two threads (OpenMP build, OMP_NUM_THREADS=1 and 2, interleaved ratio rows, wall time)"
    echo
    threads_table "$rows" "${thread_stems[@]}"
  fi
  if [[ -s $results/peak.md ]]; then
    echo
    echo "### Peak resident memory, 200 steps of net B at batch 128 (\`/usr/bin/time -v\`, target <= 40 MiB)"
    echo
    echo "| implementation | max RSS |"
    echo "|---|---:|"
    cat "$results/peak.md"
  fi
  if [[ -s $results/compile.md ]]; then
    echo
    echo "### Compile time (g++ -O2 -c, best of 3)"
    echo
    echo "| file | wall | CPU (user + sys) | target |"
    echo "|---|---:|---:|---:|"
    cat "$results/compile.md"
  fi
  echo
  echo "### Single ops (bench_ops)"
  echo
  ops_table
  for b in "${bench_names[@]}"; do
    case "$b" in bench_mlp_train | bench_ops) continue ;; esac
    grep -q "^$b"$'\t' "$rows" || continue  # failed or filtered out: nothing to show
    echo
    echo "### ${b#bench_}"
    echo
    generic_table "$b"
  done
} >"$report"

echo
cat "$report"

if ((docs)); then
  doc=docs/benchmarks.md
  if [[ -f "$doc" ]] && grep -q '<!-- bench:begin -->' "$doc" && grep -q '<!-- bench:end -->' "$doc"; then
    awk -v report="$report" '
      /<!-- bench:begin -->/ { print; while ((getline l < report) > 0) print l; skip = 1; next }
      /<!-- bench:end -->/ { skip = 0 }
      !skip' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
    echo "bench.sh: tables regenerated in $doc"
  else
    echo "bench.sh: $doc has no <!-- bench:begin --> / <!-- bench:end --> markers; not updated" >&2
  fi
fi

if ((${#failed[@]})); then
  echo "bench.sh: missing from the tables because they failed: ${failed[*]}" >&2
  exit 1
fi
