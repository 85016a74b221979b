"""Test oracle (h5py): every prompt 0..n-1 is in the dataset or in failures.jsonl exactly once, and the
tokens under tool_name_mask decode to the names of the tool calls in the teacher's text.
usage: check_tool_masks.py DATASET_DIR N TOKENIZER_JSON"""
import json, re, sys
import h5py

d, n, tokpath = sys.argv[1], int(sys.argv[2]), sys.argv[3]
vocab = json.load(open(tokpath))["model"]["vocab"]
added = {t["id"]: t["content"] for t in json.load(open(tokpath)).get("added_tokens", [])}
inv = {i: t for t, i in vocab.items()}
# GPT-2's byte-level alphabet, back to bytes
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
k = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + k)
        k += 1
byte_of = {chr(c): b for b, c in zip(bs, cs)}


def decode(ids):
    out = b""
    for i in ids:
        i = int(i)
        out += added[i].encode() if i in added else bytes(byte_of[ch] for ch in inv[i])
    return out.decode("utf-8", "replace")


stats = json.load(open(d + "/stats.json"))
fails = [json.loads(l) for l in open(d + "/failures.jsonl")] if stats["failures"] or stats.get("filtered") else []
with h5py.File(d + "/dataset.h5", "r") as f:
    ids_all = f["samples/prompt_id"][:]
    done = sorted([int(x) for x in ids_all] + [x["prompt_index"] for x in fails])
    assert done == list(range(n)), f"prompts not covered exactly once: {len(done)} entries for {n} prompts"
    off = f["samples/offsets"][:]
    inp, m = f["tokens/input_ids"][:], f["tokens/tool_name_mask"][:]
    to, tt = f["text/teacher_text_offsets"][:], f["text/teacher_text"][:]
    checked = 0
    for i in range(len(ids_all)):
        a, b = off[i], off[i + 1]
        names_text = decode(inp[a:b][m[a:b].astype(bool)])
        teacher = tt[to[i]:to[i + 1]].tobytes().decode()
        for name in re.findall(r'<tool_call>\n\{"name": "([^"]+)"', teacher):
            assert name in names_text, f"sample {i}: tool name {name!r} not under the mask ({names_text!r})"
            names_text = names_text.replace(name, "", 1)
            checked += 1
assert checked > n // 2, f"too few tool calls checked: {checked}"
print(f"every prompt exactly once ({len(ids_all)} samples, {len(fails)} failures); {checked} tool-name masks decode to the called names")
