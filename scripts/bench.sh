#!/usr/bin/env bash
# Builds and runs gradscope's benchmarks and reports them (docs/benchmarks.md says what each is).
#
#   scripts/bench.sh            full run: Release build in build-bench/, every bench_* program with
#                               5 repetitions (medians), an OpenMP build (build-bench-omp/) of
#                               bench_mlp_train run with 1 and 2 Eigen threads, peak memory of a
#                               200-step net-B run, compile times; prints the tables and rewrites
#                               them in docs/benchmarks.md between <!-- bench:begin --> and
#                               <!-- bench:end --> (bench_rnn_train's table between
#                               <!-- bench-rnn:begin --> and <!-- bench-rnn:end -->). The OpenMP
#                               build, peak memory and compile times belong to the bench_mlp_train
#                               run and are skipped when GRADSCOPE_BENCH_PROGRAMS leaves it out;
#                               the Results block is then left alone.
#   GRADSCOPE_BENCH_PROGRAMS=bench_rnn_train scripts/bench.sh
#                               the recurrent benchmark alone (LSTM and GRU training steps against
#                               the hand-written twin), 5 repetitions: prints its table and
#                               rewrites only its block in docs/benchmarks.md.
#   scripts/bench.sh --quick    smoke run (scripts/test.sh uses it): every benchmark once with a
#                               tiny --benchmark_min_time; fails if one reports an error. Reuses
#                               build/ (test.sh's release build) when it has the benchmarks.
# Options (full mode): --no-openmp   skip the OpenMP build and the thread comparison
#                      --no-docs     print the tables, leave docs/benchmarks.md alone
#                      --filter RE   pass --benchmark_filter=RE to every program (implies --no-docs)
#                      --tables-only  no build, no run: regenerate the report (and the docs) from
#                                     the results of the last full run (build-bench/bench-results/)
#   scripts/bench.sh --peers    gradscope against PyTorch (libtorch) and tiny-dnn: builds
#                               build-bench-peers/ with -DGRADSCOPE_BENCH_PEERS=ON (Debian
#                               libtorch-dev, tiny-dnn, libcereal-dev, libstb-dev, libgemmlowp-dev),
#                               then runs bench_mlp_train's gradscope rows and the peers' rows one
#                               program after the other, GRADSCOPE_BENCH_REPETITIONS times (order
#                               alternating), and prints medians and gradscope/peer ratios; the
#                               same for bench_rnn_train's LSTM and GRU against bench_torch_rnn
#                               (PyTorch's torch::nn::LSTM / GRU; tiny-dnn has no peer there).
#                               --threads N: N threads for every side (N > 1: an OpenMP build,
#                               build-bench-peers-omp/). OpenBLAS (PyTorch's BLAS) follows the
#                               caller's OPENBLAS_CORETYPE.
#   scripts/bench.sh --blas     bench_mlp_train's ratio rows with Eigen's own GEMM (build-bench/)
#                               against -DGRADSCOPE_USE_BLAS=ON (build-bench-blas/, Debian
#                               libopenblas-dev), OpenBLAS with OPENBLAS_CORETYPE unset and set to
#                               GRADSCOPE_OPENBLAS_CORETYPE (default SkylakeX), one OpenBLAS
#                               thread; interleaved by program, repeated, medians.
#   scripts/bench.sh --dispatch  what a user's build gets (core/detail/dispatch.hpp): bench_mlp_train
#                               built for the baseline target (build-bench-portable/, no -march;
#                               gradscope picks its kernels at run time) against the same program
#                               built with -march=native (build-bench/), and, where libtorch is
#                               installed, PyTorch (bench_torch_mlp of the portable build) with
#                               OpenBLAS's own choice of kernels (OPENBLAS_CORETYPE unset); one
#                               thread, programs interleaved, repeated, medians of the ratios.
#                               --cpu avx2 (or baseline): the portable build with that path forced
#                               (GRADSCOPE_CPU) against PyTorch on OpenBLAS's Haswell (AVX2)
#                               kernels (GRADSCOPE_OPENBLAS_CORETYPE, default Haswell), and the
#                               native build.
#   In --peers, --blas and --dispatch modes --filter RE (grep -E) picks the cases among
#   "<net>/batch:<n>" (e.g. 'B/batch:128', '^A/', 'batch:128$') and, in --peers mode, among the
#   recurrent cases "<cell>/T:<T>/B:<B>/I:<I>/H:<H>" (e.g. '^(lstm|gru)/' for those alone,
#   'T:100'); these modes print their tables and never touch docs/benchmarks.md.
# Environment: GRADSCOPE_JOBS build parallelism (default 2), GRADSCOPE_BENCH_REPETITIONS (5),
# GRADSCOPE_BENCH_PEER_LIST (--peers: "torch;tinydnn", the default, or one of them),
# GRADSCOPE_OPENBLAS_CORETYPE (--blas), GRADSCOPE_BENCH_BUILD_DIR (build directory to use instead
# of build-bench/ or build/; not for --dispatch), GRADSCOPE_BENCH_PROGRAMS (e.g. "bench_mlp_train bench_ops": run only
# these; default every bench/*.bench.cpp).
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
peers=0
blas=0
dispatch=0
dispatch_cpu=""
peer_threads=1
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --no-openmp) openmp=0 ;;
    --no-docs) docs=0 ;;
    --filter) filter=$2; docs=0; shift ;;
    --tables-only) tables_only=1 ;;
    --peers) peers=1 ;;
    --blas) blas=1 ;;
    --dispatch) dispatch=1 ;;
    --cpu) dispatch_cpu=$2; shift ;;
    --threads) peer_threads=$2; shift ;;
    -h | --help) sed -n '2,54p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ((peers + blas + dispatch + quick + tables_only > 1)); then
  echo "bench.sh: --peers, --blas, --dispatch, --quick and --tables-only do not combine" >&2
  exit 2
fi
if [[ -n $dispatch_cpu ]] && { ((!dispatch)) || [[ ! $dispatch_cpu =~ ^(avx2|baseline|avx512)$ ]]; }; then
  echo "bench.sh: --cpu takes avx512, avx2 or baseline, with --dispatch" >&2
  exit 2
fi
[[ $peer_threads =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --threads needs a positive count" >&2; exit 2; }
peer_list=${GRADSCOPE_BENCH_PEER_LIST:-torch;tinydnn}

bench_names=()
if ((peers)); then
  bench_names=(bench_mlp_train bench_rnn_train)
  [[ ";$peer_list;" == *";torch;"* ]] && bench_names+=(bench_torch_mlp bench_torch_rnn)
  [[ ";$peer_list;" == *";tinydnn;"* ]] && bench_names+=(bench_tinydnn_mlp)
elif ((blas || dispatch)); then
  bench_names=(bench_mlp_train)
elif [[ -n "${GRADSCOPE_BENCH_PROGRAMS:-}" ]]; then
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
elif ((peers)); then
  # Its own build directory; with more than one thread Eigen needs OpenMP to follow.
  peer_cmake=(-DGRADSCOPE_BENCH_PEERS=ON "-DGRADSCOPE_BENCH_PEER_LIST=$peer_list")
  if ((peer_threads > 1)); then
    build=${GRADSCOPE_BENCH_BUILD_DIR:-build-bench-peers-omp}
    peer_cmake+=(-DCMAKE_CXX_FLAGS=-fopenmp -DCMAKE_EXE_LINKER_FLAGS=-fopenmp)
  else
    build=${GRADSCOPE_BENCH_BUILD_DIR:-build-bench-peers}
  fi
  configure_and_build "$build" "${peer_cmake[@]}"
elif ((dispatch)); then
  build=build-bench
  configure_and_build "$build"
  # The portable build, with PyTorch's benchmark where libtorch is installed (the configure step
  # fails without it: then again without the peers).
  portable_build=build-bench-portable
  have_torch=0
  if cmake -S . -B "$portable_build" -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_TESTS=OFF \
    -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=ON -DGRADSCOPE_NATIVE=OFF \
    -DGRADSCOPE_BENCH_PEERS=ON -DGRADSCOPE_BENCH_PEER_LIST=torch >/dev/null 2>&1; then
    have_torch=1
    cmake --build "$portable_build" -j "$jobs" --target bench_mlp_train bench_torch_mlp
  else
    echo "bench.sh: libtorch not found (Debian libtorch-dev): the PyTorch columns are skipped" >&2
    rm -rf "$portable_build"
    cmake -S . -B "$portable_build" -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_TESTS=OFF \
      -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=ON -DGRADSCOPE_NATIVE=OFF \
      -DGRADSCOPE_BENCH_PEERS=OFF >/dev/null
    cmake --build "$portable_build" -j "$jobs" --target bench_mlp_train
  fi
elif ((blas)); then
  build=${GRADSCOPE_BENCH_BUILD_DIR:-build-bench}
  configure_and_build "$build"
  blas_build=build-bench-blas
  configure_and_build "$blas_build" -DGRADSCOPE_USE_BLAS=ON
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
((tables_only || peers || blas || dispatch)) || for b in "${bench_names[@]}"; do
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

# ---------------------------------------------------------------- --peers and --blas
# Median of the numbers on stdin (one per line), empty when none; mawk has no asort.
median_awk='function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function k(x) { return x == "" ? "-" : (x >= 1000 ? sprintf("%.1fk", x / 1000) : sprintf("%.0f", x)) }
  function r2(x) { return x == "" ? "-" : sprintf("%.2f", x) }'

# One program of a comparison: <label>_<rep>.json in $results; a crash or a skipped benchmark fails
# the comparison (a peer whose losses disagree with the twin's is not measured).
run_one() {  # label, rep, env assignments..., --, program, args...
  local label=$1 rep=$2
  shift 2
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local out=$results/${label}_$rep.json
  echo "---- [$rep/$repetitions] $label: ${envs[*]} $*"
  if ! env "${envs[@]}" "$@" --benchmark_out="$out" --benchmark_out_format=json; then
    echo "bench.sh: $label failed (repetition $rep)" >&2
    exit 1
  fi
  if grep -q '"error_occurred": true' "$out"; then
    echo "bench.sh: $label reported an error:" >&2
    grep -h '"error_message"' "$out" >&2 || true
    exit 1
  fi
  json_rows "$out" >>"$results/rows.tsv"
}

comparison_header() {  # what, command
  local load
  load=$(awk -F'\t' '$2 == "context" && $4 == "load_avg" { print $5; exit }' "$results/rows.tsv" | tr -d '[]')
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$2\` ($repetitions repetitions, medians)."
  echo
  echo "- Machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average at the start: ${load:-?}; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- Compiler: $("$(awk -F= '/^CMAKE_CXX_COMPILER:/ { print $2 }' "$build/CMakeCache.txt")" --version | head -1); gradscope at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain -- include 2>/dev/null) ]] && echo ' (include/ modified)')"
  echo "- $1"
}

# The cases --filter RE picks among the given ones, joined by '|' (empty when none).
filtered_cases() {
  local c picked=()
  for c in "$@"; do
    [[ -z "$filter" ]] || grep -Eq -- "$filter" <<<"$c" && picked+=("$c")
  done
  local IFS='|'
  echo "${picked[*]}"
}
# The cases of bench_mlp_train (bench/mlp_train.bench.cpp, kCases).
mlp_cases() {
  filtered_cases A/batch:10 A/batch:128 B/batch:32 B/batch:128 C/batch:128 D/batch:128 E/batch:128
}
# The cases of bench_rnn_train (bench/rnn_cases.hpp, kCases).
rnn_cases() {
  filtered_cases lstm/T:28/B:128/I:28/H:128 lstm/T:100/B:32/I:32/H:256 \
    gru/T:28/B:128/I:28/H:128 gru/T:100/B:32/I:32/H:256
}
# The MLP cases; exits when --filter matches none.
selected_cases() {
  local picked
  picked=$(mlp_cases)
  [[ -n $picked ]] || { echo "bench.sh: --filter '$filter' matches none of the nets' cases" >&2; exit 2; }
  echo "$picked"
}

if ((peers)); then
  : >"$results/rows.tsv"
  cases=$(mlp_cases)
  rcases=$(rnn_cases)
  [[ -n $cases || -n $rcases ]] || { echo "bench.sh: --filter '$filter' matches none of the cases" >&2; exit 2; }
  ours_env=(OMP_NUM_THREADS="$peer_threads" OMP_PROC_BIND=close OPENBLAS_NUM_THREADS="$peer_threads")
  peer_env=(OMP_NUM_THREADS="$peer_threads" OPENBLAS_NUM_THREADS="$peer_threads")
  for ((rep = 1; rep <= repetitions; rep++)); do
    # Alternate which side runs first, so a drift in the machine's load does not favour one side.
    progs=()
    if [[ -n $cases ]]; then
      progs=(ours)
      [[ " ${bench_names[*]} " == *" bench_torch_mlp "* ]] && progs+=(torch)
      [[ " ${bench_names[*]} " == *" bench_tinydnn_mlp "* ]] && progs+=(tinydnn)
      ((rep % 2)) || progs=("${progs[@]:1}" ours)
    fi
    # The recurrent benchmark against PyTorch's LSTM and GRU (no tiny-dnn peer).
    if [[ -n $rcases && " ${bench_names[*]} " == *" bench_torch_rnn "* ]]; then
      if ((rep % 2)); then progs+=(oursrnn torchrnn); else progs+=(torchrnn oursrnn); fi
    fi
    for p in "${progs[@]}"; do
      case $p in
        ours) run_one ours "$rep" "${ours_env[@]}" -- "$build/bench/bench_mlp_train" \
          --benchmark_filter="^mlp_train/($cases)/gradscope" ;;
        torch) run_one torch "$rep" "${peer_env[@]}" -- "$build/bench/peers/bench_torch_mlp" \
          --threads="$peer_threads" --benchmark_filter="^peers/torch/($cases)(/ratio)?(/real_time)?\$" ;;
        tinydnn) run_one tinydnn "$rep" "${peer_env[@]}" -- "$build/bench/peers/bench_tinydnn_mlp" \
          --threads="$peer_threads" --benchmark_filter="^peers/tinydnn/($cases)(/real_time)?\$" ;;
        oursrnn) run_one oursrnn "$rep" "${ours_env[@]}" -- "$build/bench/bench_rnn_train" \
          --benchmark_filter="^rnn_train/($rcases)/gradscope" ;;
        torchrnn) run_one torchrnn "$rep" "${peer_env[@]}" -- "$build/bench/peers/bench_torch_rnn" \
          --threads="$peer_threads" --benchmark_filter="^peers/torch/($rcases)(/ratio)?(/real_time)?\$" ;;
      esac
    done
  done
  core=$(awk -F'\t' '$1 ~ /^torch(rnn)?_/ && $2 == "context" && $4 == "openblas_core" { print $5; exit }' "$results/rows.tsv")
  torch_version=$(awk -F'\t' '$1 ~ /^torch(rnn)?_/ && $2 == "context" && $4 == "torch_version" { print $5; exit }' "$results/rows.tsv")
  report=$results/peers.md
  # Debian's libtorch takes its BLAS from the libblas.so.3 alternative: without libopenblas0 that
  # is the reference BLAS, and PyTorch's GEMM-bound steps run 20-30x slower than with OpenBLAS.
  blas_warning=""
  if [[ -n $torch_version && $core == "-" ]]; then
    blas_warning="WARNING: PyTorch ran without OpenBLAS (libblas.so.3 is the reference BLAS; install libopenblas-dev): its figures below are not representative."
    echo "bench.sh: $blas_warning" >&2
  fi
  {
    if [[ -n $blas_warning ]]; then printf '%s\n\n' "$blas_warning"; fi
    comparison_header "Threads: $peer_threads for every side; PyTorch ${torch_version:-(not run)} on OpenBLAS core ${core:-?} (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}); timing: $( ((peer_threads > 1)) && echo 'wall time' || echo 'CPU time of the benchmark thread')" \
      "scripts/bench.sh --peers$( ((peer_threads > 1)) && echo " --threads $peer_threads")"
    echo
    [[ -n $cases ]] && awk -F'\t' "$median_awk"'
      $3 != "single" || $2 == "context" { next }
      {
        split($1, f, "_"); prog = f[1]; rep = f[2]
        n = split($2, p, "/")
        if (prog == "ours" && p[4] == "gradscope" && $4 == "samples/s") { id = p[2] "/" p[3]; ours[id, rep] = $5 }
        else if (prog != "ours" && n == 4 && $4 == "samples/s") { id = p[3] "/" p[4]; peer[prog, id, rep] = $5 }
        else if (prog == "torch" && p[5] == "ratio" && $4 == "ratio") { id = p[3] "/" p[4]; inproc[id, rep] = $5 }
        else next
        if (!(id in seen)) { seen[id] = 1; order[++nid] = id }
        if (rep > reps) reps = rep
      }
      function col(prog, id,   r, m, a, b, c, nb, nc, q) {
        m = 0; nb = 0; nc = 0
        for (r = 1; r <= reps; r++) {
          if ((prog, id, r) in peer) { b[++nb] = peer[prog, id, r]; if ((id, r) in ours) c[++nc] = ours[id, r] / peer[prog, id, r] }
        }
        if (nb == 0) return " - | - |"
        q = median(c, nc)
        lo = c[1]; hi = c[nc]
        return sprintf(" %s | **%s** (%s-%s) |", k(median(b, nb)), r2(q), r2(lo), r2(hi))
      }
      END {
        hdr = "| net | batch | gradscope samples/s |"; sep = "|---|---|---:|"
        for (i = 1; i <= nid; i++) for (r = 1; r <= reps; r++) {
          if (("torch", order[i], r) in peer) have_torch = 1
          if (("tinydnn", order[i], r) in peer) have_td = 1
        }
        if (have_torch) { hdr = hdr " PyTorch samples/s | gradscope/PyTorch (min-max) | same, in one process |"; sep = sep "---:|---:|---:|" }
        if (have_td) { hdr = hdr " tiny-dnn samples/s | gradscope/tiny-dnn (min-max) |"; sep = sep "---:|---:|" }
        print hdr; print sep
        for (i = 1; i <= nid; i++) {
          id = order[i]; split(id, p, "/"); b = p[2]; sub(/batch:/, "", b)
          na = 0; for (r = 1; r <= reps; r++) if ((id, r) in ours) a[++na] = ours[id, r]
          line = sprintf("| %s | %s | %s |", p[1], b, k(median(a, na)))
          if (have_torch) {
            line = line col("torch", id)
            ni = 0; for (r = 1; r <= reps; r++) if ((id, r) in inproc) d[++ni] = inproc[id, r]
            line = line sprintf(" %s |", r2(median(d, ni)))
          }
          if (have_td) line = line col("tinydnn", id)
          print line
        }
      }' "$results/rows.tsv"
    if [[ -n $rcases ]] && grep -q '^torchrnn_' "$results/rows.tsv"; then
      [[ -n $cases ]] && echo
      echo "Recurrent (bench_rnn_train against bench_torch_rnn: torch::nn::LSTM / GRU, target >= 1.0 at one thread):"
      echo
      awk -F'\t' -v threads="$peer_threads" "$median_awk"'
        $3 != "single" || $2 == "context" { next }
        {
          split($1, f, "_"); prog = f[1]; rep = f[2]
          n = split($2, p, "/")
          if (prog == "oursrnn" && p[7] == "gradscope" && $4 == "samples/s") { id = p[2] "/" p[3] "/" p[4] "/" p[5] "/" p[6]; ours[id, rep] = $5 }
          else if (prog == "torchrnn" && n == 7 && $4 == "samples/s") { id = p[3] "/" p[4] "/" p[5] "/" p[6] "/" p[7]; peer[id, rep] = $5 }
          else if (prog == "torchrnn" && p[8] == "ratio" && $4 == "ratio") { id = p[3] "/" p[4] "/" p[5] "/" p[6] "/" p[7]; inproc[id, rep] = $5 }
          else if (prog == "torchrnn" && p[8] == "ratio" && $4 == "ratio_reference") { id = p[3] "/" p[4] "/" p[5] "/" p[6] "/" p[7]; inref[id, rep] = $5 }
          else next
          if (!(id in seen)) { seen[id] = 1; order[++nid] = id }
          if (rep > reps) reps = rep
        }
        END {
          print "| cell | T | B | I | H | gradscope samples/s | PyTorch samples/s | gradscope/PyTorch (min-max) | same, in one process | target | met | ours/reference, same process (target >= 0.9) |"
          print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|"
          for (i = 1; i <= nid; i++) {
            id = order[i]; split(id, p, "/")
            for (j = 2; j <= 5; j++) sub(/^[A-Z]:/, "", p[j])
            na = 0; nb = 0; nc = 0; ni = 0; ne = 0
            for (r = 1; r <= reps; r++) {
              if ((id, r) in ours) a[++na] = ours[id, r]
              if ((id, r) in peer) { b[++nb] = peer[id, r]; if ((id, r) in ours) c[++nc] = ours[id, r] / peer[id, r] }
              if ((id, r) in inproc) d[++ni] = inproc[id, r]
              if ((id, r) in inref) e[++ne] = inref[id, r]
            }
            q = median(c, nc); inp = median(d, ni); inr = median(e, ne)
            target = threads == 1 ? ">= 1.0" : "-"
            met = threads == 1 && q != "" ? (q >= 1.0 ? "yes" : "**no**") : ""
            printf "| %s | %s | %s | %s | %s | %s | %s | **%s** (%s-%s) | %s | %s | %s | %s |\n", toupper(p[1]), p[2], p[3], p[4], p[5],
              k(median(a, na)), k(median(b, nb)), r2(q), nc ? r2(c[1]) : "-", nc ? r2(c[nc]) : "-", r2(inp), target, met, r2(inr)
          }
        }' "$results/rows.tsv"
    fi
    echo
    echo "gradscope/peer: median over the repetitions of (gradscope samples/s / peer samples/s), each"
    echo "repetition's two programs run back to back (min-max over the repetitions in brackets); > 1"
    echo "means gradscope is faster. \"In one process\": bench_torch_mlp's and bench_torch_rnn's ratio"
    echo "rows (both sides interleaved in one loop, blocks of about 10 ms; bench_torch_rnn's loop also"
    echo "runs the hand-written twin, whence the last column, ours/reference under the same load)."
    if [[ $core == Prescott ]] && grep -q avx512f /proc/cpuinfo 2>/dev/null; then
      echo
      echo "Note: OpenBLAS did not recognise this CPU and runs its Prescott (SSE3) kernels, which slows"
      echo "PyTorch down several times: rerun with OPENBLAS_CORETYPE=SkylakeX for a fair comparison."
    fi
  } >"$report"
  echo
  cat "$report"
  exit 0
fi

if ((dispatch)); then
  : >"$results/rows.tsv"
  cases=$(selected_cases)
  one=(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)
  # ours: the portable build on the path asked for (default: its own choice); the peer's core:
  # OpenBLAS's choice, or Haswell's when an AVX2 or baseline path is measured.
  if [[ -n $dispatch_cpu && $dispatch_cpu != avx512 ]]; then
    ours_cpu=(GRADSCOPE_CPU="$dispatch_cpu")
    torch_core=(OPENBLAS_CORETYPE="${GRADSCOPE_OPENBLAS_CORETYPE:-Haswell}")
  else
    ours_cpu=()
    [[ -n $dispatch_cpu ]] && ours_cpu=(GRADSCOPE_CPU="$dispatch_cpu")
    torch_core=(-u OPENBLAS_CORETYPE)
  fi
  for ((rep = 1; rep <= repetitions; rep++)); do
    variants=(native portable)
    ((have_torch)) && variants+=(torch)
    ((rep % 2)) || variants=("${variants[@]:1}" native)
    for v in "${variants[@]}"; do
      case $v in
        native) run_one native "$rep" -u GRADSCOPE_CPU "${one[@]}" -- "$build/bench/bench_mlp_train" \
          --benchmark_filter="^mlp_train/($cases)/gradscope" ;;
        portable) run_one portable "$rep" -u GRADSCOPE_CPU "${ours_cpu[@]}" "${one[@]}" -- \
          "$portable_build/bench/bench_mlp_train" --benchmark_filter="^mlp_train/($cases)/gradscope" ;;
        torch) run_one torch "$rep" -u GRADSCOPE_CPU "${torch_core[@]}" "${ours_cpu[@]}" "${one[@]}" -- \
          "$portable_build/bench/peers/bench_torch_mlp" --threads=1 \
          --benchmark_filter="^peers/torch/($cases)(/ratio)?\$" ;;
      esac
    done
  done
  path=$(awk -F'\t' '$1 ~ /^portable_/ && $2 == "context" && $4 == "cpu_path" { print $5; exit }' "$results/rows.tsv")
  native_path=$(awk -F'\t' '$1 ~ /^native_/ && $2 == "context" && $4 == "cpu_path" { print $5; exit }' "$results/rows.tsv")
  core=$(awk -F'\t' '$1 ~ /^torch_/ && $2 == "context" && $4 == "openblas_core" { print $5; exit }' "$results/rows.tsv")
  report=$results/dispatch.md
  {
    comparison_header "bench_mlp_train, one thread, CPU time. Native: $build/ (-march=native, CPU path ${native_path:-?}); portable: $portable_build/ (-DGRADSCOPE_NATIVE=OFF: no -march, the kernels chosen at run time), CPU path ${path:-?}$( [[ -n $dispatch_cpu ]] && echo " (GRADSCOPE_CPU=$dispatch_cpu)")$( ((have_torch)) && echo "; PyTorch: bench_torch_mlp of the portable build, OpenBLAS core ${core:-?} ($( [[ ${torch_core[0]} == -u ]] && echo 'OPENBLAS_CORETYPE unset' || echo "${torch_core[0]}"))")" \
      "scripts/bench.sh --dispatch$( [[ -n $dispatch_cpu ]] && echo " --cpu $dispatch_cpu")"
    echo
    awk -F'\t' -v path="${path:-?}" -v torch="$have_torch" "$median_awk"'
      $3 != "single" || $2 == "context" { next }
      {
        split($1, f, "_"); v = f[1]; rep = f[2]; n = split($2, p, "/")
        if ((v == "native" || v == "portable") && p[4] == "gradscope" && $4 == "samples/s") id = p[2] "/" p[3]
        else if (v == "torch" && n == 4 && $4 == "samples/s") id = p[3] "/" p[4]
        else if (v == "torch" && p[5] == "ratio" && $4 == "ratio") { id = p[3] "/" p[4]; v = "inproc" }
        else next
        x[v, id, rep] = $5
        if (!(id in seen)) { seen[id] = 1; order[++nid] = id }
        if (rep > reps) reps = rep
      }
      function med(v, id,   r, a, n) { n = 0; for (r = 1; r <= reps; r++) if ((v, id, r) in x) a[++n] = x[v, id, r]; return median(a, n) }
      function ratio(u, w, id,   r, a, n, q) {
        n = 0; for (r = 1; r <= reps; r++) if ((u, id, r) in x && (w, id, r) in x && x[w, id, r] > 0) a[++n] = x[u, id, r] / x[w, id, r]
        if (n == 0) return "-"
        q = median(a, n); return sprintf("**%s** (%s-%s)", r2(q), r2(a[1]), r2(a[n]))
      }
      END {
        hdr = "| net | batch | native samples/s | portable (" path ") samples/s | portable/native (min-max) |"
        sep = "|---|---|---:|---:|---:|"
        if (torch) { hdr = hdr " PyTorch samples/s | portable/PyTorch (min-max) | same, in one process |"; sep = sep "---:|---:|---:|" }
        print hdr; print sep
        for (i = 1; i <= nid; i++) {
          id = order[i]; split(id, p, "/"); b = p[2]; sub(/batch:/, "", b)
          line = sprintf("| %s | %s | %s | %s | %s |", p[1], b, k(med("native", id)), k(med("portable", id)), ratio("portable", "native", id))
          if (torch) line = line sprintf(" %s | %s | %s |", k(med("torch", id)), ratio("portable", "torch", id), r2(med("inproc", id)))
          print line
        }
      }' "$results/rows.tsv"
    echo
    echo "Ratios: median over the repetitions of the two programs' samples/s, run back to back (min-max"
    echo "in brackets; > 1: the portable build is faster). \"In one process\": bench_torch_mlp's ratio rows,"
    echo "gradscope (compiled as in the portable build, on the same CPU path) and PyTorch interleaved."
  } >"$report"
  echo
  cat "$report"
  exit 0
fi

if ((blas)); then
  : >"$results/rows.tsv"
  cases=$(selected_cases)
  blas_core=${GRADSCOPE_OPENBLAS_CORETYPE:-SkylakeX}
  for ((rep = 1; rep <= repetitions; rep++)); do
    variants=(eigen blasauto blascore)
    ((rep % 2)) || variants=(blascore blasauto eigen)
    for v in "${variants[@]}"; do
      case $v in
        eigen) run_one eigen "$rep" -u OPENBLAS_CORETYPE -- "$build/bench/bench_mlp_train" \
          --benchmark_filter="^mlp_train/($cases)/ratio" ;;
        blasauto) run_one blasauto "$rep" -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 -- \
          "$blas_build/bench/bench_mlp_train" --benchmark_filter="^mlp_train/($cases)/ratio" ;;
        blascore) run_one blascore "$rep" OPENBLAS_CORETYPE="$blas_core" OPENBLAS_NUM_THREADS=1 -- \
          "$blas_build/bench/bench_mlp_train" --benchmark_filter="^mlp_train/($cases)/ratio" ;;
      esac
    done
  done
  report=$results/blas.md
  {
    comparison_header "bench_mlp_train ratio rows, one thread (OPENBLAS_NUM_THREADS=1), CPU time; no BLAS: $build/, -DGRADSCOPE_USE_BLAS=ON: $blas_build/ (EIGEN_USE_BLAS, $(awk -F= '/^BLAS_openblas_LIBRARY:/ { print $2 }' "$blas_build/CMakeCache.txt"))" \
      "scripts/bench.sh --blas"
    echo
    awk -F'\t' -v core="$blas_core" "$median_awk"'
      $3 != "single" || $2 == "context" { next }
      $4 == "ratio" || $4 == "gradscope_samples/s" || $4 == "reference_samples/s" {
        split($1, f, "_"); v = f[1]; rep = f[2]; split($2, p, "/"); id = p[2] "/" p[3]
        x[v, id, $4, rep] = $5
        if (!(id in seen)) { seen[id] = 1; order[++nid] = id }
        if (rep > reps) reps = rep
      }
      function med(v, id, key,   r, a, n) {
        n = 0; for (r = 1; r <= reps; r++) if ((v, id, key, r) in x) a[++n] = x[v, id, key, r]
        return median(a, n)
      }
      function cell(v, id) { return sprintf(" %s / %s, %s |", k(med(v, id, "gradscope_samples/s")), k(med(v, id, "reference_samples/s")), r2(med(v, id, "ratio"))) }
      END {
        print "| net | batch | no BLAS: ours / ref samples/s, ours/ref | OpenBLAS, OPENBLAS_CORETYPE unset | OpenBLAS, OPENBLAS_CORETYPE=" core " | ours: OpenBLAS " core " / no BLAS |"
        print "|---|---|---:|---:|---:|---:|"
        for (i = 1; i <= nid; i++) {
          id = order[i]; split(id, p, "/"); b = p[2]; sub(/batch:/, "", b)
          e = med("eigen", id, "gradscope_samples/s"); c = med("blascore", id, "gradscope_samples/s")
          printf "| %s | %s |%s%s%s %s |\n", p[1], b, cell("eigen", id), cell("blasauto", id), cell("blascore", id), (e > 0 && c != "") ? r2(c / e) : "-"
        }
      }' "$results/rows.tsv"
  } >"$report"
  echo
  cat "$report"
  exit 0
fi

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

# rnn_train: one row per cell and case [T, B, I, H].
rnn_table() {  # rows file
  awk -F'\t' -v agg="$agg" '
    $1 == "bench_rnn_train" && $2 ~ /^rnn_train\// {
      if ($3 == agg) v[$2, $4] = $5
      else if ($3 == "stddev") sd[$2, $4] = $5
      split($2, p, "/"); id = p[2] "/" p[3] "/" p[4] "/" p[5] "/" p[6]
      if (!(id in seen)) { seen[id] = 1; order[++n] = id }
    }
    function fmt(x, d) { return x == "" ? "-" : sprintf("%." d "f", x) }
    function k(x) { return x == "" ? "-" : (x >= 1000 ? sprintf("%.1fk", x / 1000) : sprintf("%.0f", x)) }
    END {
      print "| cell | T | B | I | H | gradscope samples/s | reference samples/s | ours/ref (separate) | ours/ref (interleaved) | GFLOP/s ours / ref | allocs/step ours / ref | mallocs/step ours / ref | target | met |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
      for (i = 1; i <= n; i++) {
        base = "rnn_train/" order[i] "/"; split(order[i], p, "/")
        for (j = 2; j <= 5; j++) sub(/^[A-Z]:/, "", p[j])
        g = v[base "gradscope", "samples/s"]; r = v[base "reference", "samples/s"]
        sep = (g != "" && r != "" && r > 0) ? g / r : ""
        q = v[base "ratio", "ratio"]; qs = sd[base "ratio", "ratio"]
        met = q == "" ? "" : (q >= 0.9 ? "yes" : "**no**")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s / %s | %s / %s | %s / %s | >= 0.9 | %s |\n",
          toupper(p[1]), p[2], p[3], p[4], p[5], k(g), k(r), fmt(sep, 2), fmt(q, 2),
          qs == "" ? "" : " (sd " fmt(qs, 2) ")",
          fmt(v[base "gradscope", "GFLOP/s"], 1), fmt(v[base "reference", "GFLOP/s"], 1),
          fmt(v[base "gradscope", "allocs/step"], 2), fmt(v[base "reference", "allocs/step"], 2),
          fmt(v[base "gradscope", "mallocs/step"], 1), fmt(v[base "reference", "mallocs/step"], 1), met
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
  if grep -q $'^bench_rnn_train\t' "$rows"; then
    echo
    echo "==== rnn_train (smoke run: one short measurement, not for reading)"
    rnn_table "$rows"
  fi
  echo "bench.sh --quick: all ${#bench_names[@]} benchmark programs ran without errors"
  exit 0
fi

# Replaces what lies between <!-- <marker>:begin --> and <!-- <marker>:end --> in
# docs/benchmarks.md with a file.
update_doc_block() {  # marker, file
  local doc=docs/benchmarks.md
  if [[ -f "$doc" ]] && grep -q "<!-- $1:begin -->" "$doc" && grep -q "<!-- $1:end -->" "$doc"; then
    awk -v report="$2" -v begin="<!-- $1:begin -->" -v end="<!-- $1:end -->" '
      index($0, begin) { print; while ((getline l < report) > 0) print l; skip = 1; next }
      index($0, end) { skip = 0 }
      !skip' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
    echo "bench.sh: tables regenerated in $doc ($1)"
  else
    echo "bench.sh: $doc has no <!-- $1:begin --> / <!-- $1:end --> markers; not updated" >&2
  fi
}

# ---------------------------------------------------------------- rnn_train
# Its own report and its own block of docs/benchmarks.md (in the recurrent section).
if grep -q $'^bench_rnn_train\t' "$rows"; then
  rctx() { awk -F'\t' -v k="$1" '$1 == "bench_rnn_train" && $2 == "context" && $4 == k { print $5; exit }' "$rows"; }
  rnn_flags=$build/bench/CMakeFiles/bench_rnn_train.dir/flags.make
  rnn_cxx=$(awk -F= '/^CMAKE_CXX_COMPILER:/ { print $2 }' "$build/CMakeCache.txt")
  rnn_report=$results/rnn.md
  {
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`GRADSCOPE_BENCH_PROGRAMS=bench_rnn_train ./scripts/bench.sh\` (medians of $repetitions repetitions; the full \`./scripts/bench.sh\` runs it too) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain -- include bench 2>/dev/null) ]] && echo ' (include/ or bench/ modified)')."
    echo
    echo "- Machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average at the start of the run: $(rctx load_avg | tr -d '[]'); at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Compiler: $("$rnn_cxx" --version | head -1); flags: \`$(sed -n 's/^CXX_FLAGS = //p' "$rnn_flags" 2>/dev/null)\`"
    echo "- Eigen $(rctx eigen_version), SIMD: $(rctx eigen_simd); Eigen::nbThreads() = $(rctx eigen_threads); gradscope's float products: $(rctx gemm) (the twin's: Eigen's)"
    echo
    rnn_table "$rows"
  } >"$rnn_report"
  echo
  cat "$rnn_report"
  if ((docs)); then update_doc_block bench-rnn "$rnn_report"; fi
fi

# The rest belongs to the bench_mlp_train run: without it, stop here.
if [[ " ${bench_names[*]} " != *" bench_mlp_train "* ]]; then
  if ((${#failed[@]})); then
    echo "bench.sh: missing from the tables because they failed: ${failed[*]}" >&2
    exit 1
  fi
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
  # The README's 20-line example as a user's file: on gradscope::compiled (its interface
  # definitions) and header-only.
  awk '/^## A 20-line example/ { f = 1; next } f && /^```cpp/ { p = 1; next } p && /^```/ { exit } p' \
    README.md >"$tmp/readme_example.cpp"
  read -r w c < <(compile_seconds "$tmp/readme_example.cpp" -DGRADSCOPE_EXTERN_TEMPLATES \
    -DGRADSCOPE_COMPILED_LIBRARY -DEIGEN_MAX_ALIGN_BYTES=64 -DEIGEN_MAX_STATIC_ALIGN_BYTES=64)
  echo "| README's 20-line example on \`gradscope::compiled\` | $w s | $c s | <= 3 s |" >>"$results/compile.md"
  read -r w c < <(compile_seconds "$tmp/readme_example.cpp")
  echo "| README's 20-line example, header-only | $w s | $c s | - |" >>"$results/compile.md"
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
  echo "- Eigen $(ctx eigen_version), SIMD: $(ctx eigen_simd); OpenMP: $(ctx openmp), Eigen::nbThreads() = $(ctx eigen_threads); gradscope's float products: $(ctx gemm) (the twin's: Eigen's)"
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
    case "$b" in bench_mlp_train | bench_ops | bench_rnn_train) continue ;; esac
    grep -q "^$b"$'\t' "$rows" || continue  # failed or filtered out: nothing to show
    echo
    echo "### ${b#bench_}"
    echo
    generic_table "$b"
  done
} >"$report"

echo
cat "$report"

if ((docs)); then update_doc_block bench "$report"; fi

if ((${#failed[@]})); then
  echo "bench.sh: missing from the tables because they failed: ${failed[*]}" >&2
  exit 1
fi
