#!/usr/bin/python3
"""Golden files for tokenizer parity: one short SHA-256 per line of an encodings file.

  hash_lines.py write ENC.jsonl CORPUS.jsonl > GOLDEN      (first line: the corpus's own SHA-256)
  hash_lines.py check ENC.jsonl CORPUS.jsonl GOLDEN LABEL  (exit 1 on any differing line)
"""
import hashlib
import sys


def h(b):
    return hashlib.sha256(b).hexdigest()[:12]


mode, enc, corpus = sys.argv[1:4]
corpus_hash = hashlib.sha256(open(corpus, "rb").read()).hexdigest()
lines = open(enc, "rb").read().split(b"\n")
if lines and lines[-1] == b"":
    lines.pop()
if mode == "write":
    print(corpus_hash)
    for l in lines:
        print(h(l))
    sys.exit(0)
golden, label = sys.argv[4], sys.argv[5]
g = open(golden).read().split()
if g[0] != corpus_hash:
    print(f"{label}: the corpus differs from the one the goldens were made from "
          f"(regenerate with tests/reference/make_tokenizer_goldens.sh)")
    sys.exit(1)
g = g[1:]
bad = [i for i, (a, b) in enumerate(zip(lines, g)) if h(a) != b]
if len(lines) != len(g):
    print(f"{label}: {len(lines)} encodings but {len(g)} golden lines")
    sys.exit(1)
for i in bad[:5]:
    print(f"{label}: document {i + 1} differs from Hugging Face's encoding: {lines[i][:200]!r}")
print(f"{label}: {len(lines)} documents, {len(bad)} differ from Hugging Face")
sys.exit(1 if bad else 0)
