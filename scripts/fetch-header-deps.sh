#!/usr/bin/env bash
# Unpacks the header-only dependencies (nlohmann/json, doctest, CLI11), Google Benchmark and Oniguruma from Debian's packages into
# .deps/ without installing them, for machines that have LibTorch but not our Debian packages
# (the GPU machine: see docs/building.md). Needs apt-get and Debian's package index.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.deps
mkdir -p "$dest/debs"
(cd "$dest/debs" && apt-get download nlohmann-json3-dev doctest-dev libcli11-dev libbenchmark-dev libbenchmark1debian \
  libonig-dev libonig5)
for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest"; done
# Oniguruma ships a pkg-config file whose paths say /usr; a CMake package config pointing into
# $dest lets find_package(oniguruma CONFIG) take it from CMAKE_PREFIX_PATH instead.
mkdir -p "$dest/usr/lib/cmake/oniguruma"
cat >"$dest/usr/lib/cmake/oniguruma/onigurumaConfig.cmake" <<'CMAKE'
get_filename_component(_onig_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET oniguruma::onig)
  add_library(oniguruma::onig SHARED IMPORTED)
  set_target_properties(oniguruma::onig PROPERTIES
    IMPORTED_LOCATION "${_onig_prefix}/lib/x86_64-linux-gnu/libonig.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_onig_prefix}/include")
endif()
CMAKE
echo "header-only dependencies unpacked under $dest/usr"
