#!/usr/bin/env bash
# The kdstep dispatcher: --help, <sub> --help, unknown command/flag exit 2, --version.
set -u
K="${KDSTEP:?}"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

out=$("$K" --help); rc=$?
check "--help exits 0" '[ $rc -eq 0 ]'
check "--help lists config" 'grep -q "^  config " <<<"$out"'
check "--help lists tools" 'grep -q "^  tools " <<<"$out"'
"$K" >/dev/null 2>&1; rc=$?
check "no command exits 2" '[ $rc -eq 2 ]'
err=$("$K" frobnicate 2>&1); rc=$?
check "unknown command exits 2" '[ $rc -eq 2 ]'
check "unknown command is named" 'grep -q "unknown command '"'"'frobnicate'"'"'" <<<"$err"'
check "unknown command prints usage" 'grep -q "^usage: kdstep" <<<"$err"'
for sub in $("$K" --help | awk '/^commands:/{f=1;next} /^$/{f=0} f{print $1}'); do
  out=$("$K" "$sub" --help); rc=$?
  check "$sub --help exits 0" '[ $rc -eq 0 ]'
  check "$sub --help prints usage" 'grep -q "^usage: kdstep $sub" <<<"$out"'
  err=$("$K" "$sub" --no-such-flag 2>&1); rc=$?
  check "$sub unknown flag exits 2" '[ $rc -eq 2 ]'
  check "$sub unknown flag names it" 'grep -q -- "--no-such-flag" <<<"$err"'
done
out=$("$K" --version); rc=$?
check "--version exits 0" '[ $rc -eq 0 ]'
for lib in "kdstep " "MPI:" "HDF5:" "jansson:" "curl:" "BLAS:"; do
  check "--version names $lib" 'grep -q "$lib" <<<"$out"'
done
# config errors reach the user with file:line:column
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'train:\n  lrr: 1\n' >"$tmp/c.yaml"
err=$("$K" config --config "$tmp/c.yaml" 2>&1); rc=$?
check "bad config exits 1" '[ $rc -eq 1 ]'
check "bad config names file:line:col and nearest key" 'grep -q "c.yaml:2:3: unknown key '"'"'lrr'"'"' in section '"'"'train'"'"' (did you mean '"'"'lr'"'"'?)" <<<"$err"'
out=$("$K" config --set train.lr=0.01); rc=$?
check "--set applies" 'grep -q "lr: 0.01" <<<"$out"'
out=$("$K" tools --tools "$KD_SOURCE_DIR/configs/tools.json" --check get_weather '{"city": 3}' 2>&1); rc=$?
check "tools --check reports JSON path" '[ $rc -eq 1 ] && grep -q "\$.city: expected string, got integer" <<<"$out"'
exit $fail
