#!/usr/bin/python3
"""Every prompt and answer string in ../shared/data (BFCL, glaive) as JSON lines, in a fixed order.

usage: shared_strings.py DATA_DIR OUT.jsonl
Prompts: each message content, each function list (as JSON); answers: each ground truth (as JSON)
and each string inside it; glaive: each turn's value and each tools string.
"""
import glob
import json
import os
import sys

data, out = sys.argv[1], sys.argv[2]
strings = []


def walk_strings(v):
    if isinstance(v, str):
        strings.append(v)
    elif isinstance(v, list):
        for x in v:
            walk_strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            walk_strings(x)


for path in sorted(glob.glob(os.path.join(data, "bfcl", "*.json"))):
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        for turn in r.get("question", []):
            for m in turn:
                if isinstance(m.get("content"), str):
                    strings.append(m["content"])
        if "function" in r:
            strings.append(json.dumps(r["function"], ensure_ascii=False))
for path in sorted(glob.glob(os.path.join(data, "bfcl", "possible_answer", "*.json"))):
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        strings.append(json.dumps(r["ground_truth"], ensure_ascii=False))
        walk_strings(r["ground_truth"])
for path in sorted(glob.glob(os.path.join(data, "glaive", "*.json"))):
    for r in json.load(open(path, encoding="utf-8")):
        for turn in r.get("conversations", []):
            strings.append(turn["value"])
        if isinstance(r.get("tools"), str):
            strings.append(r["tools"])
with open(out, "w", encoding="utf-8") as f:
    for s in strings:
        f.write(json.dumps(s, ensure_ascii=False) + "\n")
