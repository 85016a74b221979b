#!/usr/bin/env bash
# A serial HDF5 is refused at configure time, with a message that names the package to install
# (issue #24; cmake/KdDeps.cmake). The serial HDF5 is Debian's libhdf5-dev, downloaded and unpacked
# into a throwaway folder (apt-get download + dpkg-deb -x) and named by HDF5_ROOT: installing it would
# change the system's default HDF5 (the hdf5.pc and h5cc alternatives) under everyone else's builds.
# If libhdf5-dev happens to be installed, its own prefix is used instead.
# Skips (77) when the package can be neither found nor downloaded.
set -euo pipefail
: "${KD_SOURCE_DIR:?}" "${KD_BUILD_DIR:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
if [[ -f "/usr/lib/$arch/hdf5/serial/include/H5pubconf.h" ]]; then
  prefix="/usr/lib/$arch/hdf5/serial"
else
  debs="$KD_BUILD_DIR/test-fixtures/hdf5-serial-debs"
  mkdir -p "$debs"
  if ! ls "$debs"/libhdf5-dev_*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download -qq libhdf5-dev libhdf5-103-1 >/dev/null 2>&1) \
      || { echo "hdf5_serial_refused: SKIP: cannot download libhdf5-dev (apt-get download)"; exit 77; }
  fi
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$tmp/root"; done
  prefix="$tmp/root/usr/lib/$arch/hdf5/serial"
fi
[[ -f "$prefix/include/H5pubconf.h" ]] || fail "no serial HDF5 prefix at $prefix"
grep -q "define H5_HAVE_PARALLEL" "$prefix/include/H5pubconf.h" && fail "$prefix is not a serial HDF5"

set +e
cmake -S "$KD_SOURCE_DIR" -B "$tmp/build" -DHDF5_ROOT="$prefix" >"$tmp/configure.log" 2>&1; rc=$?
set -e
(( rc != 0 )) || { cat "$tmp/configure.log"; fail "configure succeeded with the serial HDF5 at $prefix"; }
for want in "The HDF5 found is serial" "$prefix" "apt install libhdf5-openmpi-dev" "spack install hdf5+mpi"; do
  grep -qF -- "$want" "$tmp/configure.log" || { cat "$tmp/configure.log"; fail "configure error lacks '$want'"; }
done
# the same tree configures with the parallel HDF5 of this machine (the refusal was about HDF5 alone)
cmake -S "$KD_SOURCE_DIR" -B "$tmp/build2" >"$tmp/configure2.log" 2>&1 || { cat "$tmp/configure2.log"; fail "configure with the default HDF5"; }
echo "hdf5_serial_refused: configure said:"; sed -n '/CMake Error/,/^Call Stack/p' "$tmp/configure.log"
