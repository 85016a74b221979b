#!/usr/bin/python3
"""Variants of the real tokenizer.json files that exercise what the originals do not:

usage: make_variants.py CACHE_TOKENIZERS_DIR OUT_DIR
  llama3-bos      Llama 3's own post-processor: Sequence[ByteLevel, TemplateProcessing with BOS]
  qwen3-flags     added tokens with lstrip / rstrip / single_word / normalized, and new added tokens
  gpt2-prefix     ByteLevel add_prefix_space, post-processor trim_offsets
  qwen3-splits    Split behaviours (MergedWithPrevious, Contiguous, invert, a String pattern) and an
                  unknown regex (PCRE2 path)
"""
import json
import os
import sys

src, out = sys.argv[1], sys.argv[2]


def load(name):
    return json.load(open(os.path.join(src, name, "tokenizer.json"), encoding="utf-8"))


def save(name, tj):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    with open(os.path.join(out, name, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)


l = load("llama3")
l["post_processor"] = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
     "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
              {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
     "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
save("llama3-bos", l)

q = load("qwen3")
for a in q["added_tokens"]:
    if a["content"] == "<tool_call>":
        a["lstrip"] = True
    if a["content"] == "</tool_call>":
        a["rstrip"] = True
    if a["content"] == "<think>":
        a["single_word"] = True
    if a["content"] == "</think>":
        a["normalized"] = True
    if a["content"] == "<|im_start|>":
        a["lstrip"] = True
        a["rstrip"] = True
nid = max(a["id"] for a in q["added_tokens"]) + 1
for content, special, norm, sw in [("hello world", False, True, False), ("Å", False, True, False),
                                   ("the", False, False, True), ("<|im", True, False, False)]:
    q["added_tokens"].append({"id": nid, "content": content, "single_word": sw, "lstrip": False, "rstrip": False,
                              "normalized": norm, "special": special})
    nid += 1
save("qwen3-flags", q)

g = load("gpt2")
g["pre_tokenizer"]["add_prefix_space"] = True
g["post_processor"]["trim_offsets"] = True
save("gpt2-prefix", g)

s = load("qwen3")
s["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{N}+"}, "behavior": "MergedWithPrevious", "invert": False},
    {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Contiguous", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[,;:]"}, "behavior": "MergedWithNext", "invert": True},
    {"type": "Split", "pattern": {"Regex": "\\s+|[^\\s\\p{L}]+"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
save("qwen3-splits", s)
