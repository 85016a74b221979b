#!/usr/bin/env bash
# Dependencies are found without pkg-config (issue #24; cmake/KdDeps.cmake), as on a cluster whose
# HDF5 comes from Spack, EasyBuild or a module (h5pcc and CMake configs, no Debian .pc files):
#   1. configure with pkg-config disabled (CMAKE_DISABLE_FIND_PACKAGE_PkgConfig, PKG_CONFIG_EXECUTABLE
#      pointing nowhere, PKG_CONFIG_PATH emptied): HDF5 comes from find_package(HDF5) through h5pcc,
#      BLAS from find_package(BLAS), the rest from find_path/find_library; kdstep builds and its
#      --version names the parallel HDF5;
#   2. configure with HDF5_ROOT naming an install prefix (Debian's /usr/lib/<triplet>/hdf5/openmpi,
#      as a module would set HDF5_ROOT; it has no bin/h5pcc, and FindHDF5 then looks nowhere else):
#      HDF5 is found by search, still parallel.
set -euo pipefail
: "${KD_SOURCE_DIR:?}" "${KD_BUILD_DIR:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
nopc=(-DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DPKG_CONFIG_EXECUTABLE=/nonexistent/pkg-config)
export PKG_CONFIG_PATH="" PKG_CONFIG_LIBDIR=/nonexistent

cmake -S "$KD_SOURCE_DIR" -B "$tmp/b1" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${nopc[@]}" >"$tmp/c1.log" 2>&1 \
  || { cat "$tmp/c1.log"; fail "configure without pkg-config"; }
grep -q "HDF5 (parallel): find_package(HDF5) via the compiler wrapper .*h5pcc" "$tmp/c1.log" || { cat "$tmp/c1.log"; fail "HDF5 not found through h5pcc"; }
if grep -E "^-- [a-z0-9]+: pkg-config|pkg-config " "$tmp/c1.log"; then fail "pkg-config was used"; fi
grep -q "^-- jansson: .*libjansson" "$tmp/c1.log" || { cat "$tmp/c1.log"; fail "jansson not found by find_library"; }
cmake --build "$tmp/b1" -j"$(nproc)" --target kdstep -- --no-print-directory >"$tmp/b1.log" 2>&1 || { tail -30 "$tmp/b1.log"; fail "build"; }
"$tmp/b1/kdstep" --version >"$tmp/v.txt" || fail "kdstep --version"
grep -q "HDF5" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "--version names no HDF5"; }

# 2. HDF5_ROOT, a prefix without a wrapper
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
root="/usr/lib/$arch/hdf5/openmpi"
if [[ -d "$root/include" ]]; then
  cmake -S "$KD_SOURCE_DIR" -B "$tmp/b2" "${nopc[@]}" -DHDF5_ROOT="$root" >"$tmp/c2.log" 2>&1 \
    || { cat "$tmp/c2.log"; fail "configure with HDF5_ROOT"; }
  grep -q "HDF5 (parallel): find_package(HDF5) by search (HDF5_ROOT=$root)" "$tmp/c2.log" || { cat "$tmp/c2.log"; fail "HDF5_ROOT not used"; }
  echo "hdf5_without_pkgconfig: h5pcc build ok; HDF5_ROOT=$root found by search"
else
  echo "hdf5_without_pkgconfig: h5pcc build ok (no $root prefix here to try HDF5_ROOT)"
fi
