#!/usr/bin/python3
"""Compare two encodings files line by line (HF's node output and bench_tokenizer --hf).

usage: compare_lines.py HF.jsonl KD.jsonl LABEL [--ids-only]
One known difference is accepted: HF's byte-to-character conversion maps an end offset that falls
inside a character to that character's start, which only happens when the ByteLevel post-processor
trims a prefix space that took the span of a multi-byte first character (HF [0,0], kdstep [0,1]).
"""
import json
import sys

hf_path, kd_path, label = sys.argv[1:4]
ids_only = "--ids-only" in sys.argv[4:]
a = open(hf_path, encoding="utf-8").read().split("\n")
b = open(kd_path, encoding="utf-8").read().split("\n")
bad = 0
for i, (x, y) in enumerate(zip(a, b)):
    if x == y:
        continue
    h, k = json.loads(x), json.loads(y)
    if ids_only and h["ids"] == k["ids"]:
        continue
    if h["ids"] == k["ids"] and all(ho == ko or (ho[0] == ho[1] == ko[0] and ko[1] == ko[0] + 1)
                                    for ho, ko in zip(h["offsets"], k["offsets"])):
        continue
    bad += 1
    if bad <= 3:
        print(f"{label}: line {i + 1}:\n  hf     {x[:400]}\n  kdstep {y[:400]}")
if len(a) != len(b):
    print(f"{label}: {len(a)} lines from HF but {len(b)} from kdstep")
    bad += 1
print(f"{label}: {len(a) - 1} documents, {bad} differ")
sys.exit(1 if bad else 0)
