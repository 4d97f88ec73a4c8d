#!/usr/bin/env bash
# Data-parallel scaling of net B at a global batch of 256 (bench/dist/data_parallel.bench.cpp):
# bench_dist under mpiexec with 1 and 2 ranks, one Eigen thread per rank, several rounds with
# the order alternating; prints every round, then the medians and the 2-rank / 1-rank ratio.
#
#   scripts/bench-dist.sh                 5 rounds (GRADSCOPE_BENCH_REPETITIONS), ranks "1 2"
#   scripts/bench-dist.sh --rounds 9 --ranks "1 2"
#
# The machine's load average is printed before and after: on a machine shared with other work
# the 2-rank figure suffers first (both ranks must be on a core at once to exchange gradients).
# Environment: GRADSCOPE_BENCH_BUILD_DIR (default build-bench), GRADSCOPE_JOBS (2),
# GRADSCOPE_MPIEXEC_FLAGS (extra mpiexec flags; Open MPI gets --mca mpi_yield_when_idle 1, and
# --allow-run-as-root as root).
# Needs: cmake, a C++20 compiler, Google Benchmark, MPI (scripts/install-deps.sh), awk.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${GRADSCOPE_BENCH_REPETITIONS:-5}
ranks_list="1 2"
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --ranks) ranks_list=$2; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-dist.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-dist.sh: --rounds needs a positive count" >&2; exit 2; }

build=${GRADSCOPE_BENCH_BUILD_DIR:-build-bench}
if [[ -f $build/CMakeCache.txt ]]; then  # an existing build keeps its options
  grep -q '^CMAKE_BUILD_TYPE:STRING=Release' "$build/CMakeCache.txt" ||
    { echo "bench-dist.sh: $build is not a Release build" >&2; exit 1; }
  cmake -S . -B "$build" -DGRADSCOPE_BUILD_BENCHMARKS=ON >/dev/null
else
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_TESTS=OFF \
    -DGRADSCOPE_BUILD_EXAMPLES=OFF -DGRADSCOPE_BUILD_BENCHMARKS=ON >/dev/null
fi
cmake --build "$build" -j "${GRADSCOPE_JOBS:-2}" --target bench_dist
exe=$build/bench_dist
[[ -x $exe ]] || { echo "bench-dist.sh: $exe was not built (is MPI installed?)" >&2; exit 1; }

mpiexec=$(command -v mpiexec || command -v mpirun) ||
  { echo "bench-dist.sh: no mpiexec (scripts/install-deps.sh installs Open MPI)" >&2; exit 1; }
read -r -a flags <<<"${GRADSCOPE_MPIEXEC_FLAGS:-}"
if "$mpiexec" --version 2>/dev/null | grep -Eq "Open MPI|OpenRTE"; then
  # A waiting rank yields its core (sched_yield) instead of spinning: no cost on a quiet machine,
  # and on a busy one the CPU time of a step is then its work, not its waiting.
  flags+=(--mca mpi_yield_when_idle 1)
  [[ $(id -u) == 0 ]] && flags+=(--allow-run-as-root)
fi

out=$(mktemp)
trap 'rm -f "$out" "$out.csv" "$out.err"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   ($(nproc) cores)"
read -r -a ranks <<<"$ranks_list"
for ((r = 1; r <= rounds; ++r)); do
  order=("${ranks[@]}")
  if ((r % 2 == 0)); then  # alternate the order: neither configuration always runs first
    order=()
    for ((k = ${#ranks[@]} - 1; k >= 0; --k)); do order+=("${ranks[k]}"); done
  fi
  for n in "${order[@]}"; do
    # CSV on rank 0's stdout: name,iterations,real_time,cpu_time,time_unit,...,counters
    if ! "$mpiexec" -n "$n" "${flags[@]}" "$exe" --benchmark_format=csv >"$out.csv" 2>"$out.err"; then
      cat "$out.err" >&2
      echo "bench-dist.sh: $n rank(s) failed: $mpiexec -n $n ${flags[*]} $exe" >&2
      exit 1
    fi
    awk -F, -v n="$n" -v round="$r" '
        /^name,/ { for (i = 1; i <= NF; ++i) { h = $i; gsub(/"/, "", h); col[h] = i }; next }
        /^"dist_step/ {
          name = $1; gsub(/"/, "", name); sub(/\/iterations.*/, "", name)
          printf "%s\t%d\t%d\t%.1f\t%.3f\t%.3f\t%.3f\t%.3f\n", name, round, n, $col["samples/s"],
            $col["real_time"], $col["allreduce_ms"], $col["copy_ms"], $col["cpu_time"]
        }
        /^"dist_allreduce/ {
          printf "dist_allreduce/B\t%d\t%d\t0\t%.3f\t%.3f\t0\t%.3f\n", round, n, $col["allreduce_ms"],
            $col["allreduce_ms"], $col["cpu_time"] / 1000
        }' "$out.csv" >>"$out"
  done
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-52s %5s %5s %10s %8s %8s %12s %8s\n' benchmark round ranks samples/s step_ms cpu_ms \
  allreduce_ms copy_ms
sort -t$'\t' -k1,1 -k3,3n -k2,2n "$out" |
  awk -F'\t' '{ printf "%-52s %5d %5d %10.0f %8.2f %8.2f %12.3f %8.3f\n", $1, $2, $3, $4, $5, $8, $6, $7 }'
echo
echo "medians over $rounds rounds (cpu_ms: rank 0's CPU time per step; on a loaded machine"
echo "'cpu ratio' = 1-rank cpu_ms / N-rank cpu_ms estimates the scaling the wall clock hides):"
printf '%-52s %5s %10s %8s %8s %12s %8s %9s %9s\n' benchmark ranks samples/s step_ms cpu_ms \
  allreduce_ms copy_ms "vs 1 rank" "cpu ratio"
awk -F'\t' '
  function median(key, col,   n, i, j, t, a) {
    n = split(vals[key, col], a, " ")
    for (i = 1; i <= n; ++i) for (j = i + 1; j <= n; ++j) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $1 SUBSEP $3; if (!(key in seen)) { seen[key] = 1; keys[++m] = key }
    for (c = 4; c <= 8; ++c) vals[key, c] = vals[key, c] " " $c }
  END {
    for (k = 1; k <= m; ++k) { med[keys[k]] = median(keys[k], 4); cpu[keys[k]] = median(keys[k], 8) }
    for (k = 1; k <= m; ++k) {
      split(keys[k], p, SUBSEP)
      base = med[p[1] SUBSEP 1]; cbase = cpu[p[1] SUBSEP 1]
      step = p[1] ~ /^dist_step/
      ratio = (step && base > 0) ? sprintf("%.2fx", med[keys[k]] / base) : "-"
      cratio = (step && cpu[keys[k]] > 0) ? sprintf("%.2fx", cbase / cpu[keys[k]]) : "-"
      printf "%-52s %5d %10.0f %8.2f %8.2f %12.3f %8.3f %9s %9s\n", p[1], p[2], median(keys[k], 4),
        median(keys[k], 5), median(keys[k], 8), median(keys[k], 6), median(keys[k], 7), ratio, cratio
    }
  }' "$out"
