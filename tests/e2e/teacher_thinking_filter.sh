#!/usr/bin/env bash
# Teacher control and the sample filter (issue 16).
# Thinking: with teacher.extra_body {"chat_template_kwargs": {"enable_thinking": true}} the stub writes a
#   <think> block before each answer. Under generate.thinking drop (the default) the block is in /text
#   and every token of it has zero weight in every mask (loss, tool name, JSON, integration); under
#   keep it is trained on. Token bytes come from the tokenizer.json itself (h5py + the GPT-2 byte map).
# Filter: with a stub that writes malformed calls, generate.filter schema_valid (the default) and
#   json_valid reject some conversations into failures.jsonl (kind filtered, with the reason), none
#   rejects nothing, and samples + filtered + failures = prompts in stats.json every time.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=60
tools="$KD_SOURCE_DIR/configs/tools.json"
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 4 -o "$tmp/p.jsonl" >/dev/null
gen() { # out [--set ...]
  local out=$1; shift
  "$KDSTEP" generate --prompts "$tmp/p.jsonl" --out "$out" --tokenizer-path "$tok" --tools "$tools" --teacher stub \
    "$@" 2>"$out.log" || { cat "$out.log"; exit 1; }
}
think='teacher.extra_body={"chat_template_kwargs": {"enable_thinking": true}}'
gen "$tmp/drop" --set "$think"
gen "$tmp/keep" --set "$think" --set generate.thinking=keep
/usr/bin/python3 - "$tok/tokenizer.json" "$tmp/drop" "$tmp/keep" <<'PY'
import json, re, sys, h5py, numpy as np
def byte_map():  # GPT-2's bytes_to_unicode, inverted
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, m = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + m); m += 1
    return {chr(c): b for b, c in zip(bs, cs)}
tj = json.load(open(sys.argv[1]))
inv = byte_map()
vocab = {i: bytes(inv[ch] for ch in s) for s, i in tj["model"]["vocab"].items()}
for t in tj.get("added_tokens", []):
    vocab[t["id"]] = t["content"].encode()
MASKS = ["loss_mask", "tool_name_mask", "json_mask", "integration_mask"]
def think_weights(d):
    """(blocks, weight of their tokens per mask, loss tokens outside them)"""
    blocks, inside, outside = 0, {m: 0 for m in MASKS}, 0
    with h5py.File(d + "/dataset.h5", "r") as f:
        off = f["samples/offsets"][:]
        ids = f["tokens/input_ids"][:]
        masks = {m: f["tokens/" + m][:] for m in MASKS}
        tt, to = f["text/teacher_text"][:], f["text/teacher_text_offsets"][:]
    for i in range(len(off) - 1):
        a, b = off[i], off[i + 1]
        pieces = [vocab[int(x)] for x in ids[a:b]]
        starts = np.cumsum([0] + [len(p) for p in pieces])
        text = b"".join(pieces)
        resp = tt[to[i]:to[i + 1]].tobytes()
        at = text.rfind(resp)
        assert at >= 0, "the sample's text is not its tokens"
        spans = [(m.start(), m.end()) for m in re.finditer(rb"<think>\n(.+?)\n</think>\n*", text[at:], re.S)]
        assert spans, f"sample {i}: no <think> block with reasoning in /text"
        blocks += len(spans)
        in_block = np.zeros(b - a, bool)
        for s, e in spans:
            in_block |= (starts[:-1] >= at + s) & (starts[:-1] < at + e)
        for m in MASKS:
            inside[m] += int(masks[m][a:b][in_block].sum())
        outside += int(masks["loss_mask"][a:b][~in_block].sum())
    return blocks, inside, outside
blocks, inside, outside = think_weights(sys.argv[2])
assert all(v == 0 for v in inside.values()), f"thinking drop: think tokens carry weight: {inside}"
assert outside > 0
kb, kin, kout = think_weights(sys.argv[3])
assert kb == blocks and kin["loss_mask"] > 0, f"thinking keep: think tokens have no loss weight: {kin}"
print(f"thinking: {blocks} <think> blocks in /text; drop: 0 weight in every mask ({outside} trained tokens elsewhere); "
      f"keep: {kin['loss_mask']} think tokens trained")
PY
gen "$tmp/schema" --set teacher.malformed_rate=0.4
gen "$tmp/json" --set teacher.malformed_rate=0.4 --set generate.filter=json_valid
gen "$tmp/none" --set teacher.malformed_rate=0.4 --set generate.filter=none
/usr/bin/python3 - "$n" "$tmp/schema" "$tmp/json" "$tmp/none" <<'PY'
import json, sys, h5py
n = int(sys.argv[1])
got = {}
for d in sys.argv[2:]:
    st = json.load(open(d + "/stats.json"))
    fails = [json.loads(l) for l in open(d + "/failures.jsonl")]
    filt = [x for x in fails if x["kind"] == "filtered"]
    assert st["samples"] + st["filtered"] + st["failures"] == n, (d, st["samples"], st["filtered"], st["failures"])
    assert st["filtered"] == len(filt) and st["failures"] == len(fails) - len(filt), st
    with h5py.File(d + "/dataset.h5", "r") as f:
        ids = set(int(x) for x in f["samples/prompt_id"][:])
    assert not ids & {x["prompt_index"] for x in filt}, "a filtered conversation is in the dataset"
    assert all(x["reason"].startswith(("json_valid:", "schema_valid:")) for x in filt), filt[:2]
    got[d.rsplit("/", 1)[1]] = (st["samples"], st["filtered"], st["failures"], filt[0]["reason"] if filt else "")
s, j, none = got["schema"], got["json"], got["none"]
assert none[1] == 0, "filter none rejected something"
assert s[1] > 0 and j[1] > 0 and s[1] >= j[1], got
assert none[0] > s[0]
print(f"filter over {n} prompts (samples, filtered, failures): schema_valid {s[:3]}, json_valid {j[:3]}, none {none[:3]}; "
      f"e.g. {s[3]!r}")
PY
