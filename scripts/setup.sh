#!/usr/bin/env bash
# Installs what building and testing moe needs on a fresh Debian machine:
# Debian packages through apt-get, Python packages through pip. Idempotent:
# installs only what is missing.
set -euo pipefail

need_deb=()
for pkg in cmake make gcc clang clang-format libcmocka-dev libjansson-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_deb+=("$pkg")
done
if ((${#need_deb[@]})); then
  echo "setup: installing Debian packages: ${need_deb[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_deb[@]}"
fi

# libFuzzer and the sanitizer runtimes of the installed clang (scripts/fuzz.sh):
# Debian ships them in libclang-rt-<major>-dev, only recommended by clang.
if command -v clang >/dev/null 2>&1; then
  rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
  if ! dpkg -s "$rt" >/dev/null 2>&1; then
    echo "setup: installing Debian package: $rt"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$rt" ||
      echo "setup: $rt not available; scripts/fuzz.sh will say what is missing"
  fi
fi

# Python packages for the fixture writers, the binding's tests and plots.
if command -v python3 >/dev/null 2>&1; then
  need_py=()
  for mod in numpy safetensors ml_dtypes pytest wheel; do
    python3 -c "import $mod" >/dev/null 2>&1 || need_py+=("$mod")
  done
  if ((${#need_py[@]})); then
    echo "setup: installing Python packages: ${need_py[*]}"
    python3 -m pip install -q "${need_py[@]}"
  fi
fi

# cuobjdump and nvdisasm, for the ctest sm90_sass (bench/check_hgmma.sh reads
# the Hopper kernels' SASS): a CUDA toolkit without them gets the PyPI ones.
if command -v nvcc >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 &&
  ! command -v cuobjdump >/dev/null 2>&1 &&
  [ ! -x "$(dirname "$(command -v nvcc)")/cuobjdump" ] &&
  ! python3 -c 'import nvidia, os, sys; sys.exit(0 if any(os.path.exists(os.path.join(p, "cu13", "bin", "nvdisasm")) for p in nvidia.__path__) else 1)' >/dev/null 2>&1; then
  echo "setup: installing Python packages: nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm"
  python3 -m pip install -q nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm ||
    echo "setup: no cuobjdump from PyPI; the ctest sm90_sass will skip"
fi
