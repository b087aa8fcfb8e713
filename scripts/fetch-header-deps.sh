#!/usr/bin/env bash
# Unpacks the header-only dependencies (nlohmann/json, doctest, CLI11) and Google Benchmark from Debian's packages into
# .deps/ without installing them, for machines that have LibTorch but not our Debian packages
# (the GPU machine: see docs/building.md). Needs apt-get and Debian's package index.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.deps
mkdir -p "$dest/debs"
(cd "$dest/debs" && apt-get download nlohmann-json3-dev doctest-dev libcli11-dev libbenchmark-dev libbenchmark1debian)
for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest"; done
echo "header-only dependencies unpacked under $dest/usr"
