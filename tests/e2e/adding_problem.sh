#!/usr/bin/env bash
# End-to-end check of the gradients-through-time verdicts on the adding problem at T = 50: an LSTM
# trained until its test MSE is below 0.01 is not vanishing_through_time, while a tanh RNN (Xavier
# recurrent matrix) trained with the same budget still is; the table has a row per model.
# Usage: adding_problem.sh PATH_TO_adding_problem
set -euo pipefail
exe=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$exe" --models rnn lstm --lengths 50 --seeds 1 --steps 1500 --lr 0.003 --svg "$dir/a.svg" \
  > "$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; fail "exited $?"; }
cat "$dir/out.txt"
lstm=$(grep -E '^LSTM +50 ' "$dir/out.txt") || fail "no LSTM row"
rnn=$(grep -E '^tanh RNN +50 ' "$dir/out.txt") || fail "no tanh RNN row"
# Columns: model T seed "test MSE" "MSE < 0.01" verdict horizon reach time.
awk '{ if ($4 >= 0.01) exit 1 }' <<<"$lstm" || fail "the LSTM did not get below 0.01: $lstm"
grep -q "not reached" <<<"$lstm" && fail "the LSTM has no step below 0.01: $lstm"
grep -q "vanishing_through_time" <<<"$lstm" && fail "trained LSTM called vanishing: $lstm"
grep -q "vanishing_through_time" <<<"$rnn" || fail "tanh RNN not vanishing_through_time: $rnn"
grep -q "<svg" "$dir/a.svg" || fail "no SVG"
echo "adding_problem e2e: OK"
