#!/usr/bin/python3
"""Check kdstep's BPE merges by recounting from scratch: starting from HF's pre-tokenized word
counts, every merge kdstep chose must be a pair of the highest count, and among equal counts the
one with the smallest (left id, right id) -- the documented tie-break. Naive and slow on purpose.
  bpe_train_recount.py TOKENIZER_JSON WORD_COUNTS_JSON K"""
import collections
import json
import sys

tj = json.load(open(sys.argv[1], encoding="utf-8"))
words = {tuple(w): c for w, c in json.load(open(sys.argv[2], encoding="utf-8")).items()}
k = int(sys.argv[3])
vocab = tj["model"]["vocab"]
merges = [tuple(m.split(" ")) for m in tj["model"]["merges"]][:k]
bad = ties = 0
for step, (a, b) in enumerate(merges):
    pc = collections.Counter()
    for w, c in words.items():
        for x, y in zip(w, w[1:]):
            pc[(x, y)] += c
    best = max(pc.values())
    cands = sorted((vocab[x], vocab[y]) for (x, y), c in pc.items() if c == best)
    ties += len(cands) > 1
    if pc[(a, b)] != best or (vocab[a], vocab[b]) != cands[0]:
        bad += 1
        if bad <= 5:
            print(f"merge {step}: kdstep chose {a} {b} (count {pc[(a, b)]}), the rule gives ids {cands[0]} (count {best})")
    nw = collections.Counter()
    for w, c in words.items():
        o, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                o.append(a + b)
                i += 2
            else:
                o.append(w[i])
                i += 1
        nw[tuple(o)] += c
    words = nw
print(f"recount: {len(merges)} merges checked, {ties} decided by the tie-break, {bad} wrong")
sys.exit(1 if bad or len(merges) < k else 0)
