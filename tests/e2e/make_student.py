#!/usr/bin/env python3
"""Write a random Qwen3 student checkpoint (config.json, model.safetensors, tokenizer.json) for eval
tests, independently of kdstep's own writer: numpy + the safetensors layout by hand.

usage: make_student.py PRESET.json TOKENIZER.json OUTDIR [--seed S] [--vocab N]
The vocab_size is the tokenizer's id count unless --vocab says otherwise."""
import argparse, json, os, shutil, struct
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("preset"); ap.add_argument("tokenizer"); ap.add_argument("out")
ap.add_argument("--seed", type=int, default=1); ap.add_argument("--vocab", type=int, default=0)
a = ap.parse_args()
cfg = json.load(open(a.preset))
tok = json.load(open(a.tokenizer))
ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
cfg["vocab_size"] = a.vocab or (max(ids) + 1)
V, C, FF = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
D = cfg.get("head_dim", C // cfg["num_attention_heads"])
QD, KD = cfg["num_attention_heads"] * D, cfg["num_key_value_heads"] * D
rng = np.random.default_rng(a.seed)
mat = lambda o, i: (rng.standard_normal((o, i)) * 0.3).astype(np.float32)  # large std: peaked outputs
vec = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
t = [("model.embed_tokens.weight", mat(V, C))]
for l in range(cfg["num_hidden_layers"]):
    p = f"model.layers.{l}."
    t += [(p + "input_layernorm.weight", vec(C)), (p + "self_attn.q_proj.weight", mat(QD, C)),
          (p + "self_attn.k_proj.weight", mat(KD, C)), (p + "self_attn.v_proj.weight", mat(KD, C)),
          (p + "self_attn.o_proj.weight", mat(C, QD)), (p + "self_attn.q_norm.weight", vec(D)),
          (p + "self_attn.k_norm.weight", vec(D)), (p + "post_attention_layernorm.weight", vec(C)),
          (p + "mlp.gate_proj.weight", mat(FF, C)), (p + "mlp.up_proj.weight", mat(FF, C)),
          (p + "mlp.down_proj.weight", mat(C, FF))]
t.append(("model.norm.weight", vec(C)))
if not cfg.get("tie_word_embeddings", True):
    t.append(("lm_head.weight", mat(V, C)))
os.makedirs(a.out, exist_ok=True)
header, off = {"__metadata__": {"format": "pt"}}, 0
for n, x in t:
    header[n] = {"dtype": "F32", "shape": list(x.shape), "data_offsets": [off, off + x.nbytes]}
    off += x.nbytes
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for _, x in t:
        f.write(x.tobytes())
json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
