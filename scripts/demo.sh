#!/usr/bin/env bash
# The main job: train the MNIST-style deep MLP on real Fashion-MNIST and show what its gradients
# do (per-layer table, verdict, reports in build/demo/). Extra arguments go to mnist_mlp, e.g.
#   ./scripts/demo.sh --epochs 2        ./scripts/demo.sh --preset best
# With no way to install the data (no network), it says so and trains on synthetic digits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh

if data=$(./scripts/get-data.sh fashion | tail -n 1) && [[ -d "$data" ]]; then
  data_args=(--data "$data")
else
  echo "demo: Fashion-MNIST could not be installed; training on synthetic digits instead" >&2
  data_args=(--synthetic)
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGRADSCOPE_BUILD_EXAMPLES=ON > /dev/null
cmake --build build -j "${GRADSCOPE_JOBS:-2}" --target mnist_mlp
echo
exec ./build/examples/mnist_mlp --preset demo "${data_args[@]}" --report-dir build/demo "$@"
