#!/usr/bin/env bash
# End-to-end checks of mnist_mlp under mpiexec (mnist_mlp_mpi, examples/mnist_mlp_dist.hpp).
# Usage: mnist_mlp_mpi.sh PATH_TO_mnist_mlp_mpi MPIEXEC NUMPROC_FLAG [MPIEXEC_FLAGS...]
#   - two ranks on synthetic data: one report (rank 0 prints), the global batch announced,
#     report files and the checkpoint written, a resume from it on two ranks;
#   - two ranks with --batch-size 32 train like one rank with --batch-size 64: the same global
#     batches, so the same printed losses (to rounding);
#   - a missing data directory exits 2 on every rank.
set -euo pipefail
exe=$1 mpiexec=$2 np_flag=$3
shift 3
launch() { local n=$1; shift; "$mpiexec" "$np_flag" "$n" "$@"; }
mpi_flags=("$@")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
common=(--synthetic --synthetic-size 1000 --depth 3 --width 32 --threads 1)

launch 2 "${mpi_flags[@]}" "$exe" "${common[@]}" --epochs 1 --batchnorm --record-every 2 \
  --report-dir "$dir/report" --checkpoint "$dir/ckpt.safetensors" > "$dir/out.txt" 2>&1 ||
  { cat "$dir/out.txt"; fail "two-rank run exited $?"; }
cat "$dir/out.txt"
grep -q "distributed: 2 ranks x batch 128 = global batch 256" "$dir/out.txt" ||
  fail "the global batch is not announced"
[ "$(grep -c "test accuracy" "$dir/out.txt")" -eq 1 ] || fail "expected one report (rank 0's)"
grep -q "verdict:" "$dir/out.txt" || fail "no verdict"
for f in gradients.csv gradients.jsonl gradient_flow.svg model.safetensors; do
  [ -s "$dir/report/$f" ] || fail "missing report file $f"
done
[ -s "$dir/ckpt.safetensors" ] || fail "no checkpoint written"
launch 2 "${mpi_flags[@]}" "$exe" "${common[@]}" --epochs 2 --batchnorm \
  --report-dir "$dir/report2" --resume "$dir/ckpt.safetensors" > "$dir/resume.txt" 2>&1 ||
  { cat "$dir/resume.txt"; fail "two-rank resume exited $?"; }
[ "$(grep -c "resumed from" "$dir/resume.txt")" -eq 1 ] || fail "resume not reported once"
grep -q "^epoch  2 " "$dir/resume.txt" || fail "the resumed run did not train epoch 2"

# The same global batches: 2 x 32 rows on two ranks, 64 rows on one.
launch 1 "${mpi_flags[@]}" "$exe" "${common[@]}" --epochs 2 --batch-size 64 \
  --report-dir "$dir/r1" > "$dir/one.txt" 2>&1 || { cat "$dir/one.txt"; fail "one rank exited $?"; }
launch 2 "${mpi_flags[@]}" "$exe" "${common[@]}" --epochs 2 --batch-size 32 \
  --report-dir "$dir/r2" > "$dir/two.txt" 2>&1 || { cat "$dir/two.txt"; fail "two ranks exited $?"; }
losses() { awk '/^epoch +[0-9]+ +train loss/ { print $5, $8 }' "$1"; }
paste <(losses "$dir/one.txt") <(losses "$dir/two.txt") > "$dir/pairs.txt"
cat "$dir/pairs.txt"
[ "$(wc -l < "$dir/pairs.txt")" -eq 2 ] || fail "expected two epochs from each run"
awk '{ for (i = 1; i <= 2; ++i) { d = $i - $(i + 2); if (d < 0) d = -d; if (d > 2e-4) bad = 1 } }
     END { exit bad }' "$dir/pairs.txt" ||
  fail "two ranks x 32 rows did not train like one rank x 64 rows (train and val losses above)"

set +e
launch 2 "${mpi_flags[@]}" "$exe" --data "$dir/nowhere" > "$dir/missing.txt" 2>&1
code=$?
set -e
[ "$code" -eq 2 ] || { cat "$dir/missing.txt"; fail "missing data directory exited $code, expected 2"; }
grep -q "not found" "$dir/missing.txt" || fail "missing data message unclear"
echo "mnist_mlp_mpi e2e: PASS"
