#!/usr/bin/env bash
# End-to-end checks of the main example: a short run on synthetic data writes every report and
# exits 0; a resumed run is bit-identical to an uninterrupted one; bad options, data,
# checkpoints and configurations exit 2 (1 for a failure during training) with a message naming
# the problem, before any training. Tiny data throughout (synthetic digits, or IDX files of a few
# 2x2 images written below) so that the whole script takes seconds.
# Usage: mnist_mlp.sh PATH_TO_mnist_mlp
set -euo pipefail
exe=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect CODE NAME PATTERN... -- ARGS: runs mnist_mlp with ARGS, checks the exit code and that the
# output (stdout and stderr) matches every pattern (grep -E).
expect() {
  local code=$1 name=$2
  shift 2
  local patterns=()
  while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
  shift
  local out="$dir/$name.txt" got=0
  "$exe" "$@" > "$out" 2>&1 || got=$?
  [ "$got" -eq "$code" ] || { cat "$out"; fail "$name: exited $got, expected $code"; }
  for p in "${patterns[@]}"; do
    grep -qE -- "$p" "$out" || { cat "$out"; fail "$name: output does not match '$p'"; }
  done
}
# refute NAME PATTERN: the output of the last `expect NAME` does not match PATTERN.
refute() { ! grep -qE -- "$2" "$dir/$1.txt" || { cat "$dir/$1.txt"; fail "$1: output matches '$2'"; }; }

# IDX files: images N x R x C (pixel k of image i is (7 i + 13 k) mod 256) and labels i mod 10.
byte() { printf "\\$(printf %03o "$1")"; }
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
write_idx() {  # DIR SPLIT N ROWS COLS
  local d=$1 split=$2 n=$3 r=$4 c=$5 i k
  mkdir -p "$d"
  { byte 0; byte 0; byte 8; byte 3; be32 "$n"; be32 "$r"; be32 "$c"
    for ((i = 0; i < n; i++)); do for ((k = 0; k < r * c; k++)); do
      byte $(((7 * i + 13 * k) % 256)); done; done
  } > "$d/$split-images-idx3-ubyte"
  { byte 0; byte 0; byte 8; byte 1; be32 "$n"
    for ((i = 0; i < n; i++)); do byte $((i % 10)); done
  } > "$d/$split-labels-idx1-ubyte"
}
small=(--width 16 --depth 2 --record-every 1)

# ---- a short run writes every report; resuming runs the remaining epoch ----
expect 0 synthetic "test accuracy" "verdict:" "memory: peak" -- --synthetic --synthetic-size 1000 \
  --epochs 1 --depth 3 --width 32 --record-every 2 --report-dir "$dir/report" \
  --checkpoint "$dir/ckpt.safetensors"
for f in gradients.csv gradients.jsonl gradient_flow.svg model.safetensors; do
  [ -s "$dir/report/$f" ] || fail "missing report file $f"
done
[ -s "$dir/ckpt.safetensors" ] || fail "no checkpoint written"
head -1 "$dir/report/gradients.csv" | grep -q "^step,layer,kind,metric,value$" || fail "bad CSV header"
grep -q "</svg>" "$dir/report/gradient_flow.svg" || fail "SVG not closed"
expect 0 resume "resumed from .* at epoch 1" "epoch  2" -- --synthetic --synthetic-size 1000 \
  --epochs 2 --depth 3 --width 32 --report-dir "$dir/report2" --resume "$dir/ckpt.safetensors"

# ---- a resumed run is bit-identical to an uninterrupted one (schedule, dropout, shuffling) ----
base=(--synthetic --synthetic-size 300 --depth 2 --width 24 --dropout 0.3 --schedule warmup-cosine
  --batch-size 32)
same=("${base[@]}" --epochs 3)
expect 0 uninterrupted "epoch  3" -- "${same[@]}" --report-dir "$dir/full" \
  --checkpoint "$dir/ck-{epoch}.safetensors"
[ -s "$dir/ck-1.safetensors" ] && [ -s "$dir/ck-3.safetensors" ] || fail "no per-epoch checkpoints"
expect 0 resumed "resumed from .* at epoch 1" -- "${same[@]}" --report-dir "$dir/part" \
  --resume "$dir/ck-1.safetensors"
losses() { grep -oE "epoch  [23]  train loss [0-9.]+  val loss [0-9.]+  val acc [0-9.]+%" "$1"; }
[ "$(losses "$dir/uninterrupted.txt")" = "$(losses "$dir/resumed.txt")" ] ||
  fail "resumed epochs 2-3 differ from the uninterrupted run's: $(losses "$dir/resumed.txt")"
cmp -s "$dir/full/model.safetensors" "$dir/part/model.safetensors" ||
  fail "the resumed run's final checkpoint differs from the uninterrupted run's"

# ---- command-line values: non-finite, beyond float, combinations ----
for opt in --lr --weight-decay --l1 --clip-norm --clip-value --dropout --max-memory; do
  for bad in inf nan -inf 1e999; do
    expect 2 "nonfinite$opt$bad" "$opt: " -- --synthetic "$opt" "$bad"
  done
done
expect 2 lr-beyond-float "--lr: '1e39' is out of the range of a 32-bit float" -- \
  --synthetic --lr 1e39
expect 2 no-such-option "no-such-option" -- --synthetic --no-such-option
expect 2 missing-data "not found" "get-data.sh" -- --data "$dir/nowhere"
expect 2 bn-batch-1 "--batch-size: batch norm" -- --synthetic --batchnorm --batch-size 1
expect 2 mse-softmax "--loss mse: .*--output sigmoid" -- --synthetic --loss mse
expect 2 ce-sigmoid "--loss ce: " -- --synthetic --output sigmoid --loss ce

# ---- a step that would make the weights non-finite is refused (exit 1, naming it) ----
# Adam's first step divides lr by 1 - beta1 = 0.1: lr 1e38 (a float) makes it Inf. Before, the run
# (one step) exited 0 with a checkpoint of Inf and NaN weights.
expect 1 overflowing-step "Adam.step: step 1 would make parameter '0.weight' of shape \\[16, 784\\]" \
  "non-finite \\(learning rate 1e\\+38\\)" "the step was not applied" -- --synthetic \
  --synthetic-size 100 "${small[@]}" --lr 1e38 --batch-size 100 --epochs 1 --report-dir "$dir/r"
[ ! -e "$dir/r/model.safetensors" ] || fail "a refused step still wrote a checkpoint"

# ---- tiny and inconsistent data sets ----
write_idx "$dir/four" train 4 2 2
write_idx "$dir/four" t10k 3 2 2
expect 0 four-images "no validation split: 4 training images" "test accuracy" -- \
  --data "$dir/four" "${small[@]}" --epochs 2 --report-dir "$dir/r"
refute four-images "val loss|\\bnan\\b"
write_idx "$dir/one" train 1 2 2
write_idx "$dir/one" t10k 1 2 2
expect 0 one-image "no validation split: 1 training image is" "test accuracy" -- \
  --data "$dir/one" "${small[@]}" --report-dir "$dir/r"
refute one-image "\\bnan\\b"
expect 2 one-image-bn "batch norm needs batches of 2 or more samples" -- \
  --data "$dir/one" "${small[@]}" --batchnorm --report-dir "$dir/r"
write_idx "$dir/none" train 0 2 2
write_idx "$dir/none" t10k 2 2 2
expect 2 no-images "train-images-idx3-ubyte'.*(holds no images|dimension 0 is zero)" -- --data "$dir/none" \
  --report-dir "$dir/r"
write_idx "$dir/ten" train 10 2 2
write_idx "$dir/ten" t10k 2 2 2
expect 0 capped "\\| validation 2($| )" "validation capped at a fifth of the 10 training images" \
  "val loss" -- --data "$dir/ten" "${small[@]}" --validation 100 --report-dir "$dir/r"
expect 0 no-validation "\\| validation 0($| )" -- --synthetic --synthetic-size 100 "${small[@]}" \
  --validation 0 --report-dir "$dir/r"
refute no-validation "val loss|val acc|no validation split"
write_idx "$dir/mixed" train 6 2 2
write_idx "$dir/mixed" t10k 2 3 3
expect 2 mixed-sizes "t10k-images-idx3-ubyte' are 3x3 pixels" "train-images-idx3-ubyte' are 2x2" \
  -- --data "$dir/mixed" "${small[@]}" --report-dir "$dir/r"
refute mixed-sizes "epoch  1"

# ---- batch norm with a last batch of one sample: dropped, and said so ----
# 100 synthetic images, 20 held out: 80 = 79 + 1.
expect 0 bn-last-one "the last batch of 1 sample is dropped" "test accuracy" -- --synthetic \
  --synthetic-size 100 "${small[@]}" --batchnorm --batch-size 79 --epochs 2 --report-dir "$dir/r"

# ---- checkpoints that do not fit the run, found before training ----
expect 2 resume-width "takes 784 inputs but the images in '.*four/train-images-idx3-ubyte' have 4" \
  -- --data "$dir/four" --depth 3 --width 32 --resume "$dir/ckpt.safetensors" --report-dir "$dir/r"
expect 2 resume-optimizer "holds Adam state but this run uses SGD" -- --synthetic \
  --synthetic-size 1000 --depth 3 --width 32 --optimizer sgd --resume "$dir/ckpt.safetensors" \
  --report-dir "$dir/r"
expect 2 resume-beyond "is at epoch 3, beyond --epochs 2" -- "${base[@]}" --epochs 2 \
  --resume "$dir/ck-3.safetensors" --report-dir "$dir/r"
# Metadata edited by hand: the format and checksum keys are renamed (a file from another writer
# gets the structural checks only) so that the epoch's value can change while every offset
# stays put.
edit_epoch() {  # SOURCE TARGET NEW_KEY NEW_VALUE: "epoch":"1" becomes "NEW_KEY":"NEW_VALUE"
  EPOCH_KEY=$3 EPOCH_VALUE=$4 perl -0777 -pe '
    s{"epoch":"1","gradscope\.checksum":"([0-9a-f]{16})"}{
      my $v = $ENV{EPOCH_VALUE}; my $cut = length($v) - 1;
      "\"$ENV{EPOCH_KEY}\":\"$v\",\"gradscope.checksuX\":\"" . substr($1, $cut) . "\""}e
      or die "no epoch metadata\n";
    s{"gradscope\.format":}{"gradscope.formaX":} or die "no format key\n"' "$1" > "$2"
}
for bad in x -2 1e3 99999 " 1"; do
  edit_epoch "$dir/ck-1.safetensors" "$dir/bad.safetensors" epoch "$bad"
  expect 2 "bad-epoch$bad" "bad.safetensors': metadata 'epoch' is '$bad', not an integer" -- \
    "${same[@]}" --resume "$dir/bad.safetensors" --report-dir "$dir/r"
  refute "bad-epoch$bad" "epoch  2"
done
edit_epoch "$dir/ck-1.safetensors" "$dir/bad.safetensors" epocX 1
expect 2 missing-epoch "bad.safetensors': metadata 'epoch' is missing" -- "${same[@]}" \
  --resume "$dir/bad.safetensors" --report-dir "$dir/r"
# A checkpoint without run state (an older mnist_mlp's) resumes, and says it will not repeat the
# uninterrupted run exactly.
perl -0777 -pe 's{"gradscope\.checksum":}{"gradscope.checksuX":} or die;
  s{"gradscope\.format":}{"gradscope.formaX":} or die;
  s{"gradscope\.schedule\.count":}{"gradscope.schedule.counX":} or die' \
  "$dir/ck-1.safetensors" > "$dir/old.safetensors"
expect 0 resume-without-run-state "holds no run state" "epoch  3" -- "${same[@]}" \
  --resume "$dir/old.safetensors" --report-dir "$dir/r"

# ---- output paths checked before training ----
expect 2 empty-report-dir "--report-dir: empty" -- --synthetic --report-dir ""
touch "$dir/a-file"
expect 2 report-dir-under-file "--report-dir: '.*a-file' is not a directory" -- --synthetic \
  --report-dir "$dir/a-file/report"
refute report-dir-under-file "epoch  1"
expect 2 checkpoint-under-file "--checkpoint: '.*a-file' is not a directory" -- --synthetic \
  --checkpoint "$dir/a-file/ck.safetensors"
if [ "$(id -u)" -ne 0 ]; then  # root writes anywhere
  mkdir -p "$dir/read-only" && chmod 555 "$dir/read-only"
  expect 2 read-only-report-dir "--report-dir: directory '.*read-only' is not writable" -- \
    --synthetic --report-dir "$dir/read-only/report"
fi

# ---- memory: configurations beyond the machine (or --max-memory) are refused up front ----
expect 2 huge-width "needs about [0-9.]+ GB more memory" "parameters [0-9.]+ GB" -- --synthetic \
  --synthetic-size 100 --width 100000 --depth 2
expect 2 huge-depth "needs about [0-9.]+ GB more memory" -- --synthetic --synthetic-size 100 \
  --width 4096 --depth 1000
expect 2 max-memory "needs about [0-9]+ MB more memory .* but 10 MB is --max-memory" \
  "raise --max-memory" -- --synthetic --synthetic-size 100 --width 2000 --max-memory 0.01
expect 2 synthetic-memory "--synthetic-size 1000000: drawing 1200000 digits needs about 11.3 GB" \
  -- --synthetic --synthetic-size 1000000 --max-memory 1
# The estimate counts the parameters of every architecture exactly (mnist_mlp stops with an
# internal error when the built model has another count).
for residual in none post pre; do
  for bn in --batchnorm --no-batchnorm; do
    expect 0 "count-$residual$bn" "test accuracy" -- --synthetic --synthetic-size 100 --width 16 \
      --depth 5 --residual "$residual" "$bn" --dropout 0.1 --epochs 1 --report-dir "$dir/r"
  done
done
# The estimate is close to what a run uses: a model of 9.6 M parameters with Adam (154 MB).
expect 0 estimate "memory: peak" -- --synthetic --synthetic-size 100 --width 2000 --depth 3 \
  --batch-size 100 --epochs 1 --report-dir "$dir/r"
read -r peak estimated < <(sed -nE 's/^memory: peak ([0-9]+) MB resident \(estimated ([0-9]+) MB\)$/\1 \2/p' \
  "$dir/estimate.txt")
[ -n "${peak:-}" ] || { cat "$dir/estimate.txt"; fail "no peak/estimate figures"; }
# The estimate covers the model, training and data; the process adds its code and libraries.
((estimated >= peak * 7 / 10 && estimated <= peak * 13 / 10)) ||
  fail "estimate $estimated MB is not within 30% of the peak resident $peak MB"

# ---- Nielsen's chapter-1 network: sigmoid outputs, quadratic or cross-entropy cost ----
# [784, 30, 10], sigmoid everywhere, N(0, 1) weights and biases, pixels in [0, 1], SGD with lr 3
# and batches of 10: the book's setup. On synthetic digits after 3 epochs the cross-entropy cost
# reaches about 95%, the quadratic one about 70% (the learning slowdown of chapter 3).
for loss in mse bce; do
  what=$([ $loss = mse ] && echo "quadratic cost" || echo "cross-entropy on sigmoid outputs")
  expect 0 "nielsen-$loss" "sigmoid output, $what" "not standardised" "init normal" -- --synthetic \
    --synthetic-size 5000 --depth 1 --width 30 --activation sigmoid --output sigmoid \
    --loss "$loss" --init normal --no-standardize --optimizer sgd --lr 3 --schedule none \
    --batch-size 10 --epochs 3 --report-dir "$dir/r"
  acc=$(sed -nE 's/^test accuracy ([0-9]+)\..*/\1/p' "$dir/nielsen-$loss.txt")
  ((acc >= 50)) || fail "Nielsen's network with the $loss cost learnt only $acc% in 3 epochs"
done
echo "mnist_mlp end-to-end: all checks passed"
