#!/usr/bin/env bash
# Installs the Debian packages gradscope needs to build, test, benchmark and run its examples.
# Idempotent: does nothing (and needs no network) when everything is already installed.
set -euo pipefail

# Build toolchain and the libraries of the core.
packages=(cmake g++ make pkg-config libeigen3-dev catch2 libbenchmark-dev)
# Dependencies of later components: add new ones here.
extra_packages=(nlohmann-json3-dev zlib1g-dev)
# The libFuzzer targets of scripts/fuzz.sh (run by scripts/test.sh) need clang and its runtime.
extra_packages+=(clang libclang-rt-14-dev)
# The MPI component (gradscope::dist, tests/dist, mnist_mlp_mpi, bench_dist): Open MPI's headers
# and libraries, and mpiexec.
extra_packages+=(libopenmpi-dev openmpi-bin)

missing=()
for pkg in "${packages[@]}" "${extra_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]}+${#extra_packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
echo "install-deps: done"
