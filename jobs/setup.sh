#!/usr/bin/env bash
# Install kdstep's system dependencies (Debian 12) when missing, then configure and build.
# Idempotent and quiet when everything is already there.
#   jobs/setup.sh                 build into ./build (Release with debug info)
#   KD_BUILD_DIR=dir KD_CMAKE_ARGS="-DKD_SANITIZE=ON" jobs/setup.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KD_BUILD_DIR:-$root/build}"

# Debian packages, and what each is for:
pkgs=(
  build-essential cmake pkg-config git           # toolchain
  openmpi-bin libopenmpi-dev                     # MPI (mpirun, mpicc)
  libhdf5-openmpi-dev hdf5-tools                 # parallel HDF5 (datasets)
  libjansson-dev                                 # JSON
  libcurl4-openssl-dev ca-certificates           # teacher HTTP client
  libcunit1-dev                                  # unit tests
  libyaml-dev                                    # configs and job files
  libmicrohttpd-dev                              # stub teacher server
  libopenblas-dev                                # sgemm for the student model
  libutf8proc-dev                                # Unicode NFC and categories for the tokenizer
  libpcre2-dev                                   # general regex path of the pre-tokenizer
  gnuplot-nox                                    # training-curve plots
)
# Test-only oracles and tools (never part of the product): PyTorch/h5py/numpy/jinja2 for
# reference gradients, reading our HDF5 files and Qwen3's chat template; node for the HF tokenizer
# reference and the openai SDK client of `kdstep serve`; clang for libFuzzer (and CI's clang build); tmux to
# drive `kdstep chat` in a terminal (tests/e2e/serve_docs.sh); jq and curl for the scripts that talk HTTP
# and JSON; qemu-user to run the default build on an emulated baseline CPU (tests/e2e/portable_cpu.sh).
if [[ "${KD_WITH_TEST_DEPS:-0}" == 1 ]]; then
  pkgs+=(python3 python3-torch python3-h5py python3-numpy python3-jinja2 nodejs npm clang libclang-rt-14-dev libomp-dev tmux jq curl qemu-user)
fi
if [[ "${KD_WITH_SLURM:-0}" == 1 ]]; then
  pkgs+=(slurm-wlm slurm-wlm-basic-plugins munge iproute2 util-linux) # iproute2, util-linux: the namespace nodes of tests/cluster
fi

missing=()
for p in "${pkgs[@]}"; do
  # NodeSource's nodejs bundles npm and conflicts with Debian's npm package
  [[ "$p" == npm ]] && command -v npm >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$build"
if [[ ! -f "$build/CMakeCache.txt" || -n "${KD_CMAKE_ARGS:-}" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${KD_BUILD_TYPE:-RelWithDebInfo}" ${KD_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" -j"$(nproc)" -- --no-print-directory >/dev/null
echo "setup: built $build/kdstep" >&2
