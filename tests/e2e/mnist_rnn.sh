#!/usr/bin/env bash
# End-to-end check of mnist_rnn on synthetic digits: it trains, prints the per-epoch verdict with
# the time profile, writes the reports (the CSV and JSON Lines with the time profile, the SVG
# with its time panel), resumes from a checkpoint, and refuses a bad command line with exit 2.
# Usage: mnist_rnn.sh PATH_TO_mnist_rnn
set -euo pipefail
exe=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

common=(--synthetic --synthetic-size 1000 --hidden 16 --batch-size 50 --validation 100)
"$exe" "${common[@]}" --epochs 2 --report-dir "$dir/r" --checkpoint "$dir/ck{epoch}.safetensors" \
  > "$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; fail "exited $?"; }
out="$dir/out.txt"
grep -qE '^epoch  2 .* gradients: [a-z_]+  through time: gain [0-9.e+-]+/step, reach .*, horizon [0-9]+ of 27' "$out" ||
  { cat "$out"; fail "no per-epoch verdict with the time profile"; }
grep -q "test accuracy" "$out" || fail "no test accuracy"
grep -q "gradient through time" "$out" || fail "no time table in the report"
grep -q "0.weight_hh_l0" "$out" || fail "no row for the recurrent weight"
grep -q ",time_gain," "$dir/r/gradients.csv" || fail "no time profile in the CSV"
grep -q '"time_profile":"0"' "$dir/r/gradients.jsonl" || fail "no time profile in the JSON Lines"
grep -q 'class="time-profile"' "$dir/r/gradient_flow.svg" || fail "no time panel in the SVG"
[ -f "$dir/r/model.safetensors" ] && [ -f "$dir/ck2.safetensors" ] || fail "no checkpoints"
"$exe" "${common[@]}" --epochs 3 --resume "$dir/ck2.safetensors" --report-dir "$dir/r2" \
  > "$dir/resume.txt" 2>&1 || { cat "$dir/resume.txt"; fail "resume exited $?"; }
grep -q "resumed from .* at epoch 2" "$dir/resume.txt" || fail "did not resume at epoch 2"
grep -qE '^epoch  3 ' "$dir/resume.txt" || fail "no epoch 3 after resuming"
grep -qE '^epoch  1 ' "$dir/resume.txt" && fail "epoch 1 trained again after resuming"
# A checkpoint of another model: exit 2 with the tensor named.
set +e
"$exe" "${common[@]}" --hidden 8 --epochs 3 --resume "$dir/ck2.safetensors" > "$dir/bad.txt" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || { cat "$dir/bad.txt"; fail "another model's checkpoint: exit $rc, expected 2"; }
grep -q "weight_ih_l0" "$dir/bad.txt" || { cat "$dir/bad.txt"; fail "the bad tensor not named"; }
set +e
"$exe" --synthetic --model transformer > "$dir/cli.txt" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--model transformer: exit $rc, expected 2"
echo "mnist_rnn e2e: OK"
