#!/usr/bin/python3
"""Build GPT-2's Hugging Face tokenizer.json from OpenAI's encoder.json + vocab.bpe.

usage: make_gpt2_tokenizer.py GPT2_RAW_DIR OUT_DIR
The fields are those of the `gpt2` tokenizer.json on the Hugging Face hub (ByteLevel pre-tokenizer
with GPT-2's regex, merges as "a b" strings, <|endoftext|> as the one added token).
"""
import json
import os
import sys

raw, out = sys.argv[1], sys.argv[2]
with open(os.path.join(raw, "encoder.json"), encoding="utf-8") as f:
    vocab = json.load(f)
with open(os.path.join(raw, "vocab.bpe"), encoding="utf-8") as f:
    lines = f.read().split("\n")
merges = [l for l in lines[1:] if l and not l.startswith("#version")]
tok = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, indent=2)
