#!/usr/bin/env bash
# kdstep tokenize: flags, exit codes, one JSON object per input, offsets that decode to the tokens
# (checked against the vocabulary of the tokenizer.json, read independently in Python).
set -uo pipefail
src="${KD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
kd="${KDSTEP:-$src/build/kdstep}"
tok="$src/tests/fuzz/corpus/tokenizer_load/qwen_style.json"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "tokenize.sh: $*"; exit 1; }

"$kd" tokenize --help | grep -q "^usage: kdstep tokenize" || fail "--help"
"$kd" tokenize </dev/null >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] || fail "missing --tokenizer must exit 2"
grep -q -- "--tokenizer PATH is required" "$tmp/err" || fail "missing --tokenizer message"
"$kd" tokenize --tokenizer /nonexistent/t.json </dev/null >/dev/null 2>"$tmp/err"; [[ $? == 1 ]] || fail "bad path must exit 1"
grep -q "/nonexistent/t.json" "$tmp/err" || fail "bad path message"
"$kd" tokenize --bogus 2>/dev/null; [[ $? == 2 ]] || fail "unknown flag must exit 2"

printf 'hello  world<|im_end|>\nit'"'"'s 42 \xc3\xa9t\xc3\xa9\n\n' >"$tmp/in.txt"
"$kd" tokenize --tokenizer "$tok" --offsets --lines <"$tmp/in.txt" >"$tmp/lines.jsonl" || fail "--lines failed"
"$kd" tokenize --tokenizer "$tok" --offsets <"$tmp/in.txt" >"$tmp/whole.jsonl" || fail "whole input failed"
printf '"hello  world<|im_end|>"\n"it'"'"'s 42 \\u00e9t\\u00e9"\n' >"$tmp/in.jsonl"
"$kd" tokenize --tokenizer "$tok" --offsets --json-lines <"$tmp/in.jsonl" >"$tmp/json.jsonl" || fail "--json-lines failed"
/usr/bin/python3 - "$tok" "$tmp" <<'PY' || fail "offsets do not decode to the tokens"
import json, sys
tok, tmp = sys.argv[1], sys.argv[2]
tj = json.load(open(tok, encoding="utf-8"))
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
c2b = {chr(c): b for b, c in zip(bs, cs)}
tb = {i: bytes(c2b[ch] for ch in s) for s, i in tj["model"]["vocab"].items()}
for a in tj["added_tokens"]:
    tb[a["id"]] = a["content"].encode()
raw = open(f"{tmp}/in.txt", "rb").read()
lines = raw.split(b"\n")
out = [json.loads(l) for l in open(f"{tmp}/lines.jsonl")]
assert len(out) == 3, len(out)  # "a\nb\n\n": two lines and an empty one
whole = [json.loads(l) for l in open(f"{tmp}/whole.jsonl")]
assert len(whole) == 1
def check(text, enc):
    assert len(enc["ids"]) == len(enc["offsets"]) and enc["ids"]
    pos = 0
    for i, (s, e) in zip(enc["ids"], enc["offsets"]):
        assert s == pos and text[s:e] == tb[i], (text, i, s, e)
        pos = e
    assert pos == len(text)
for text, enc in zip(lines[:2], out[:2]):
    check(text, enc)
check(raw, whole[0])
js = [json.loads(l) for l in open(f"{tmp}/json.jsonl")]
assert js[0] == out[0] and js[1] == out[1], (js, out)
assert any(i == tj["added_tokens"][0]["id"] for i in out[0]["ids"])
PY
echo "tokenize.sh: ok"
