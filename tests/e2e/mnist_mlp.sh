#!/usr/bin/env bash
# End-to-end checks of the main example: a short run on synthetic data writes every report and
# exits 0; a bad option and a missing data directory exit 2 with a clear message.
# Usage: mnist_mlp.sh PATH_TO_mnist_mlp
set -euo pipefail
exe=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$exe" --synthetic --synthetic-size 1000 --epochs 1 --depth 3 --width 32 --record-every 2 \
  --report-dir "$dir/report" --checkpoint "$dir/ckpt.safetensors" > "$dir/out.txt" 2>&1 ||
  { cat "$dir/out.txt"; fail "synthetic run exited $?"; }
grep -q "test accuracy" "$dir/out.txt" || fail "no test accuracy line"
grep -q "verdict:" "$dir/out.txt" || fail "no verdict"
for f in gradients.csv gradients.jsonl gradient_flow.svg model.safetensors; do
  [ -s "$dir/report/$f" ] || fail "missing report file $f"
done
[ -s "$dir/ckpt.safetensors" ] || fail "no checkpoint written"
head -1 "$dir/report/gradients.csv" | grep -q "^step,layer,kind,metric,value$" || fail "bad CSV header"
grep -q "</svg>" "$dir/report/gradient_flow.svg" || fail "SVG not closed"
# Resuming from the checkpoint runs the remaining epoch.
"$exe" --synthetic --synthetic-size 1000 --epochs 2 --depth 3 --width 32 \
  --report-dir "$dir/report2" --resume "$dir/ckpt.safetensors" > "$dir/resume.txt" 2>&1 ||
  { cat "$dir/resume.txt"; fail "resume exited $?"; }
grep -q "resumed from" "$dir/resume.txt" || fail "resume not reported"

set +e
"$exe" --synthetic --no-such-option > "$dir/bad.txt" 2>&1
code=$?
set -e
[ "$code" -eq 2 ] || fail "bad option exited $code, expected 2"
grep -q "no-such-option" "$dir/bad.txt" || fail "bad option message does not name the option"

set +e
"$exe" --data "$dir/nowhere" > "$dir/missing.txt" 2>&1
code=$?
set -e
[ "$code" -eq 2 ] || fail "missing data directory exited $code, expected 2"
grep -q "not found" "$dir/missing.txt" || fail "missing data message unclear"
grep -q "get-data.sh" "$dir/missing.txt" || fail "missing data message gives no remedy"
echo "mnist_mlp end-to-end: all checks passed"
