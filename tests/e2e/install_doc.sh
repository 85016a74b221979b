#!/usr/bin/env bash
# docs/install.md's Debian/Ubuntu lines are run (the only install lines that are; the page says so):
#   - its apt-get line names exactly the product packages of jobs/setup.sh, and runs as written (with
#     the lock wait other installs on this machine need); every package is installed afterwards;
#   - its cmake configure lines (the default one and -DKD_NATIVE=ON) configure, in a scratch folder.
#     The build line is what jobs/setup.sh runs for tests/run.sh.
set -euo pipefail
: "${KD_SOURCE_DIR:?}"
doc="$KD_SOURCE_DIR/docs/install.md"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
apt_line=$(grep -m1 '^apt-get install ' "$doc") || fail "no apt-get install line in $doc"
doc_pkgs=$(tr ' ' '\n' <<<"${apt_line#apt-get install }" | grep -v '^-' | sort)
setup_pkgs=$(sed -n '/^pkgs=(/,/^)/p' "$KD_SOURCE_DIR/jobs/setup.sh" | sed 's/#.*//; s/pkgs=(//; s/)//' | tr ' ' '\n' | grep -v '^$' | sort)
diff <(echo "$doc_pkgs") <(echo "$setup_pkgs") >"$tmp/diff" || { cat "$tmp/diff"; fail "docs/install.md's apt line and jobs/setup.sh's packages differ (< doc, > setup.sh)"; }
if [[ $(id -u) -eq 0 ]]; then
  DEBIAN_FRONTEND=noninteractive ${apt_line/apt-get /apt-get -o DPkg::Lock::Timeout=900 } >"$tmp/apt.log" 2>&1 || { tail "$tmp/apt.log"; fail "the apt-get line failed"; }
else
  echo "install_doc: not root: the apt-get line is checked against jobs/setup.sh but not run"
fi
for p in $doc_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || fail "$p is not installed"
done
n=0
while IFS= read -r line; do
  n=$((n + 1))
  args=$(sed 's/^cmake -S \. -B build //' <<<"$line")
  # shellcheck disable=SC2086
  (cd "$KD_SOURCE_DIR" && cmake -S . -B "$tmp/build$n" $args) >"$tmp/c$n.log" 2>&1 || { cat "$tmp/c$n.log"; fail "'$line' failed"; }
done < <(grep -E '^cmake -S \. -B build -DCMAKE_BUILD_TYPE=Release( -DKD_NATIVE=ON)?$' "$doc" | sort -u)
(( n == 2 )) || fail "expected the default and the KD_NATIVE=ON configure lines in $doc, found $n"
grep -q -- "-march=native" "$tmp/build2/CMakeCache.txt" 2>/dev/null || grep -rq -- "-march=native" "$tmp/build2/CMakeFiles/kdstep_lib.dir/flags.make" || fail "KD_NATIVE=ON did not add -march=native"
grep -q -- "-march" "$tmp/build1/CMakeFiles/kdstep_lib.dir/flags.make" && fail "the default build has a -march flag"
echo "install_doc: apt line = jobs/setup.sh's packages, all installed; both configure lines work"
