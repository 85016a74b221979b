#!/bin/bash
# jobs/make-student-tokenizer.sh: makes a tokenizer when missing, leaves an existing one alone, and
# is deterministic (two runs give the same tokenizer.json); the CLI's usage errors.
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export KDSTEP=${KDSTEP:-$SRC/build/kdstep}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
for d in a b; do bash "$SRC/jobs/make-student-tokenizer.sh" --mb 1 --vocab-size 1024 --out "$T/$d" > "$T/log_$d" 2>&1; done
cmp "$T/a/tokenizer.json" "$T/b/tokenizer.json"
n=$(/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(len(t["model"]["vocab"]) + len(t["added_tokens"]))' "$T/a/tokenizer.json")
[ "$n" = 1024 ] || { echo "FAIL: $n ids, asked 1024"; exit 1; }
grep -q '"chat_template"' "$T/a/tokenizer_config.json"
bash "$SRC/jobs/make-student-tokenizer.sh" --out "$T/a" | grep -q "exists (--force to retrain)"
expect() { # exit-code message cmd...
  local want=$1 msg=$2; shift 2
  set +e; "$@" > "$T/out" 2>&1; local rc=$?; set -e
  [ "$rc" = "$want" ] || { echo "FAIL: '$*' exited $rc, want $want"; cat "$T/out"; exit 1; }
  grep -qF -- "$msg" "$T/out" || { echo "FAIL: '$*' did not say: $msg"; cat "$T/out"; exit 1; }
}
expect 0 "usage: kdstep tokenizer train" "$KDSTEP" tokenizer train --help
expect 0 "usage: kdstep tokenizer corpus" "$KDSTEP" tokenizer corpus --help
expect 2 "tokenizer: missing subcommand (train or corpus)" "$KDSTEP" tokenizer
expect 2 "tokenizer: unknown subcommand 'fit'" "$KDSTEP" tokenizer fit
expect 2 "tokenizer train: --vocab-size is required" "$KDSTEP" tokenizer train -o "$T/x" "$T/a/tokenizer.json"
expect 2 "tokenizer train: --vocab-size wants a positive integer, not 'lots'" "$KDSTEP" tokenizer train --vocab-size lots
expect 2 "tokenizer train: --min-frequency wants a positive integer, not '0'" "$KDSTEP" tokenizer train --min-frequency 0
expect 2 "tokenizer train: -o DIR is required" "$KDSTEP" tokenizer train --vocab-size 300 "$T/a/tokenizer.json"
expect 2 "tokenizer train: no training FILE given" "$KDSTEP" tokenizer train --vocab-size 300 -o "$T/x"
expect 2 "tokenizer train: unknown or incomplete flag '--bogus'" "$KDSTEP" tokenizer train --bogus
expect 1 "vocab size 100 is too small" "$KDSTEP" tokenizer train --vocab-size 100 -o "$T/x" "$T/a/tokenizer.json"
expect 1 "$T/missing.txt" "$KDSTEP" tokenizer train --vocab-size 300 -o "$T/x" "$T/missing.txt"
expect 2 "tokenizer corpus: -o FILE is required" "$KDSTEP" tokenizer corpus
expect 2 "tokenizer corpus: bad --mb 'x'" "$KDSTEP" tokenizer corpus --mb x -o "$T/c"
expect 2 "tokenizer corpus: bad --seed '1x'" "$KDSTEP" tokenizer corpus --seed 1x -o "$T/c"
expect 2 "tokenizer corpus: unexpected argument 'extra'" "$KDSTEP" tokenizer corpus -o "$T/c" extra
expect 2 "tokenizer corpus: unknown or incomplete flag '--bogus'" "$KDSTEP" tokenizer corpus --bogus
echo '[1,' > "$T/bad.json"
expect 1 "$T/bad.json:2:0" "$KDSTEP" tokenizer corpus --tools "$T/bad.json" -o "$T/c"
expect 1 "cannot write $T/nodir/c" "$KDSTEP" tokenizer corpus -o "$T/nodir/c"
echo "student tokenizer script and tokenizer CLI: ok"
