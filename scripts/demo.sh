#!/usr/bin/env bash
# The main job: train the MNIST-style deep MLP on real Fashion-MNIST and show what its gradients
# do (per-layer table, verdict, reports in build/demo/). Extra arguments go to mnist_mlp, e.g.
#   ./scripts/demo.sh --epochs 2        ./scripts/demo.sh --preset best
# With --rnn first, an LSTM reads each image row by row instead (mnist_rnn --preset demo; the
# report adds the gradient through time; reports in build/demo-rnn/):
#   ./scripts/demo.sh --rnn             ./scripts/demo.sh --rnn --preset rnn
# With no way to install the data (no network), it says so and trains on synthetic digits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

program=mnist_mlp
report_dir=build/demo
if [[ "${1:-}" == "--rnn" ]]; then
  shift
  program=mnist_rnn
  report_dir=build/demo-rnn
fi

./scripts/install-deps.sh

if data=$(./scripts/get-data.sh fashion | tail -n 1) && [[ -d "$data" ]]; then
  data_args=(--data "$data")
else
  echo "demo: Fashion-MNIST could not be installed; training on synthetic digits instead" >&2
  data_args=(--synthetic)
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_EXAMPLES=ON > /dev/null
cmake --build build -j "${GRADSCOPE_JOBS:-2}" --target "$program"
echo
exec "./build/examples/$program" --preset demo "${data_args[@]}" --report-dir "$report_dir" "$@"
