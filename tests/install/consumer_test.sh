#!/usr/bin/env bash
# Installs a helix-bench build into a fresh prefix (cmake --install), checks what landed there,
# then configures, builds and tests tests/install/consumer against it (find_package).
# Usage: consumer_test.sh CMAKE BUILD_DIR WORK_DIR
set -euo pipefail
cmake=$1 build=$2 work=$3
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/consumer" && pwd)
rm -rf "$work"
"$cmake" --install "$build" --prefix "$work/prefix" >"$work.install.log" 2>&1 \
  || { cat "$work.install.log"; exit 1; }
for f in bin/helix-bench bin/helix-micro lib/cmake/helix-bench/helix-benchConfig.cmake \
         lib/cmake/helix-bench/helix-benchConfigVersion.cmake include/helix-bench/layouts/layout.hpp \
         include/helix-bench/comm/error.hpp; do
  [[ -e $work/prefix/$f ]] || { echo "consumer_test: $f not installed" >&2; exit 1; }
done
"$work/prefix/bin/helix-bench" --version
"$cmake" -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release
"$cmake" --build "$work/build" -j 2
(cd "$work/build" && ctest --output-on-failure)
"$work/build/price_layout" llama-3.1-405b h200 8
