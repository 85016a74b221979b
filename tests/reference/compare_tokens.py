#!/usr/bin/python3
"""Compare kdstep's encodings with Hugging Face's.

usage: compare_tokens.py TOKENIZER_JSON CORPUS_JSONL KD_JSONL HF_JSONL [LABEL]
- ids must be identical;
- offsets: kdstep's byte offsets, widened to character boundaries, must equal HF's (code points);
- each token's byte range, decoded, must be the token's bytes (where the text is unchanged by
  normalization and the token is not an added token that strips spaces).
Exits 1 on any mismatch, printing the first ones.
"""
import json
import sys
import unicodedata

tok_path, corpus, kd_path, hf_path = sys.argv[1:5]
label = sys.argv[5] if len(sys.argv) > 5 else tok_path
tj = json.load(open(tok_path, encoding="utf-8"))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


C2B = bytes_to_unicode()


def tok_bytes(s):
    try:
        return bytes(C2B[c] for c in s)
    except KeyError:
        return s.encode("utf-8")


id_bytes = {i: tok_bytes(s) for s, i in tj["model"]["vocab"].items()}
strip_ids = set()
for a in tj.get("added_tokens", []):
    id_bytes[a["id"]] = tok_bytes(a["content"])
    if a.get("lstrip") or a.get("rstrip"):
        strip_ids.add(a["id"])
nfc = json.dumps(tj.get("normalizer")).find('"NFC"') >= 0

bad = 0
ntok = 0
ndocs = 0
with open(corpus, encoding="utf-8") as fc, open(kd_path, encoding="utf-8") as fk, open(hf_path, encoding="utf-8") as fh:
    for lineno, (lc, lk, lh) in enumerate(zip(fc, fk, fh), 1):
        text = json.loads(lc)
        k = json.loads(lk)
        h = json.loads(lh)
        ndocs += 1
        ntok += len(h["ids"])
        b = text.encode("utf-8")
        if k["ids"] != h["ids"]:
            bad += 1
            if bad <= 5:
                i = next((q for q, (x, y) in enumerate(zip(k["ids"], h["ids"])) if x != y), min(len(k["ids"]), len(h["ids"])))
                print(f"{label}: doc {lineno}: ids differ at token {i}: kdstep {k['ids'][max(0,i-3):i+4]} hf {h['ids'][max(0,i-3):i+4]}"
                      f" near {b[max(0,(k['offsets'][i][0] if i < len(k['offsets']) else 0)-20):][:60]!r}")
            continue
        # char index of each byte, and byte start of each char
        cstart = []
        char_of = [0] * (len(b) + 1)
        pos = 0
        for ci, ch in enumerate(text):
            L = len(ch.encode("utf-8"))
            cstart.append(pos)
            for q in range(L):
                char_of[pos + q] = ci
            pos += L
        cstart.append(pos)
        char_of[len(b)] = len(text)
        unchanged = (not nfc) or unicodedata.normalize("NFC", text) == text
        for i, (tid, (s, e), (hs, he)) in enumerate(zip(k["ids"], k["offsets"], h["offsets"])):
            if s == e:
                ks, ke = char_of[s], char_of[s]
            else:
                ks, ke = char_of[s], char_of[e - 1] + 1
            if (ks, ke) != (hs, he):
                bad += 1
                if bad <= 5:
                    print(f"{label}: doc {lineno}: token {i} (id {tid}) offsets kdstep bytes [{s},{e}) = chars [{ks},{ke}) but hf [{hs},{he})")
                break
            if unchanged and tid not in strip_ids and s != e and b[s:e] != id_bytes[tid]:
                bad += 1
                if bad <= 5:
                    print(f"{label}: doc {lineno}: token {i} (id {tid}) covers {b[s:e]!r} but decodes to {id_bytes[tid]!r}")
                break
print(f"{label}: {ndocs} docs, {ntok} tokens, {bad} mismatching docs")
sys.exit(1 if bad else 0)
