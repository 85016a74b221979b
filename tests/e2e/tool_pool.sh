#!/usr/bin/env bash
# The shipped tool pool (configs/tool_pool*.json, built by jobs/make-tool-pool.py):
#   - at least 300 distinct tools, every one loads in the registry;
#   - train and held-out pools are disjoint and together make the pool;
#   - no function of the BFCL evaluation files (simple, multiple, irrelevance, live_simple) is in the
#     pool, by name or by identical parameter schema (needs ../shared/data, else that part skips);
#   - the script rebuilds the same bytes (deterministic, seeded split).
set -u
S="${KD_SOURCE_DIR:?}"
K="${KDSTEP:?}"
DATA="${KD_SHARED_DATA:-$S/../shared/data}"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
P="$S/configs/tool_pool.json" TR="$S/configs/tool_pool.train.json" HO="$S/configs/tool_pool.heldout.json"

check "pool has >= 300 tools" '[ "$(jq length "$P")" -ge 300 ]'
check "pool names are distinct" '[ "$(jq "[.[].function.name]|unique|length" "$P")" = "$(jq length "$P")" ]'
check "train and held-out are disjoint" '[ "$(jq -n --slurpfile a "$TR" --slurpfile b "$HO" "([\$a[0][].function.name] - [\$b[0][].function.name])|length")" = "$(jq length "$TR")" ]'
check "train + held-out = pool" '[ "$(jq -n --slurpfile a "$TR" --slurpfile b "$HO" --slurpfile p "$P" "(\$a[0]+\$b[0]|map(.function.name)|sort) == (\$p[0]|map(.function.name)|sort)")" = true ]'
check "held-out share about a quarter" '[ "$(jq length "$HO")" -ge 80 ] && [ "$(jq length "$TR")" -ge 200 ]'
# every tool loads in the registry (kdstep tools check reads a registry file)
for f in "$P" "$TR" "$HO"; do
  check "registry loads $(basename "$f")" '"$K" prompts synth --tools "$f" -n 1 -o "$tmp/one.jsonl" >/dev/null 2>&1'
done

if [ ! -d "$DATA/bfcl" ]; then
  echo "skip (BFCL part): $DATA/bfcl is not here"
else
  check "no eval function in the pool (name or schema)" '/usr/bin/python3 - "$DATA/bfcl" "$P" <<"PY"
import json, sys
bfcl, pool = sys.argv[1], json.load(open(sys.argv[2]))
TM = {"dict": "object", "float": "number", "tuple": "array"}
def norm(s):
    if isinstance(s, list): return [norm(x) for x in s]
    if not isinstance(s, dict): return s
    o = {}
    for k, v in s.items():
        if k == "type" and isinstance(v, str):
            if v != "any": o[k] = TM.get(v, v)
        elif k == "properties" and isinstance(v, dict): o[k] = {a: norm(b) for a, b in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, (dict, list)): o[k] = norm(v)
        else: o[k] = v
    return o
c = lambda x: json.dumps(x, sort_keys=True)
names, schemas = set(), set()
for s in ["simple", "multiple", "irrelevance", "live_simple"]:
    for line in open(f"{bfcl}/BFCL_v3_{s}.json"):
        for fn in json.loads(line)["function"]:
            names.add(fn["name"]); schemas.add(c(fn.get("parameters"))); schemas.add(c(norm(fn.get("parameters"))))
bad = [t["function"]["name"] for t in pool if t["function"]["name"] in names or c(t["function"]["parameters"]) in schemas]
print("eval functions in the pool:", bad[:10]) if bad else None
sys.exit(1 if bad else 0)
PY'
  check "the script rebuilds the same bytes" '/usr/bin/python3 "$S/jobs/make-tool-pool.py" --data "$DATA" --out "$tmp/pool" >/dev/null && cmp "$tmp/pool/tool_pool.json" "$P" && cmp "$tmp/pool/tool_pool.train.json" "$TR" && cmp "$tmp/pool/tool_pool.heldout.json" "$HO"'
  check "another seed gives another split" '/usr/bin/python3 "$S/jobs/make-tool-pool.py" --data "$DATA" --out "$tmp/pool2" --seed 18 >/dev/null && ! cmp -s "$tmp/pool2/tool_pool.heldout.json" "$HO"'
fi
exit $fail
