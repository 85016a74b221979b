#!/usr/bin/env python3
"""Greedy decoding in PyTorch with a KV cache, on the modules of tests/reference/qwen3_ref.py (the
model the reference tests check kdstep against), for tests/bench/decode.sh.

usage: decode_torch.py MODEL_DIR PROMPT_IDS.jsonl BATCH MAX_NEW STOP_IDS(comma-separated) [THREADS]

PROMPT_IDS.jsonl holds {"index": i, "ids": [...]} per prompt (what `kdstep eval` decodes after, written
by KDSTEP_EVAL_PROMPT_IDS). Prompts go BATCH at a time: each prompt's prefill is one forward over its
tokens, then every step feeds one token per unfinished prompt (a row per prompt, keys/values appended
at each prompt's own position, finished rows dropped). Prints one JSON line."""
import json, math, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import qwen3_ref  # noqa: E402


def rope(c, pos):
    D = c["head_dim"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    f = pos.float()[:, None] * inv[None, :]
    emb = torch.cat((f, f), dim=-1)
    return emb.cos(), emb.sin()


def layer_step(layer, x, cos, sin, kc, vc, pos, n_valid):
    """x [B, t, C] at positions pos[b] .. pos[b] + t - 1; kc/vc [B, K, maxT, D] updated in place;
    n_valid[b]: positions each row attends to after this write."""
    at = layer.self_attn
    B, t, _ = x.shape
    h = layer.input_layernorm(x)
    q = at.q_norm(at.q_proj(h).view(B, t, at.H, at.D)).transpose(1, 2)  # [B, H, t, D]
    k = at.k_norm(at.k_proj(h).view(B, t, at.K, at.D)).transpose(1, 2)
    v = at.v_proj(h).view(B, t, at.K, at.D).transpose(1, 2)
    q = q * cos + qwen3_ref.rotate_half(q) * sin
    k = k * cos + qwen3_ref.rotate_half(k) * sin
    if t > 1:  # a prefill: one prompt
        p0 = int(pos[0])
        kc[0, :, p0:p0 + t] = k[0]
        vc[0, :, p0:p0 + t] = v[0]
    else:
        rows = torch.arange(B)
        kc[rows, :, pos] = k[:, :, 0]
        vc[rows, :, pos] = v[:, :, 0]
    S = int(n_valid.max())
    g = at.H // at.K
    qg = q.reshape(B, at.K, g * t, at.D)
    s = (qg @ kc[:, :, :S].transpose(-1, -2)).view(B, at.K, g, t, S) / math.sqrt(at.D)
    keypos = torch.arange(S)[None, None, :]
    qpos = (pos[:, None] + torch.arange(t)[None, :])[:, :, None]
    mask = keypos <= qpos  # [B, t, S]
    s = s.masked_fill(~mask[:, None, None], float("-inf"))
    p = torch.softmax(s, dim=-1).view(B, at.K, g * t, S)
    y = (p @ vc[:, :, :S]).view(B, at.H, t, at.D).transpose(1, 2).reshape(B, t, at.H * at.D)
    x = x + at.o_proj(y)
    return x + layer.mlp(layer.post_attention_layernorm(x))


def forward(m, ids, pos, caches):
    """ids [B, t] at positions pos [B]; returns the last position's logits [B, V]."""
    c = m.c
    B, t = ids.shape
    allpos = (pos[:, None] + torch.arange(t)[None, :]).reshape(-1)
    cos, sin = rope(c, allpos)
    cos, sin = cos.view(B, 1, t, -1), sin.view(B, 1, t, -1)
    x = m.model.embed_tokens(ids)
    n_valid = pos + t
    for layer, (kc, vc) in zip(m.model.layers, caches):
        x = layer_step(layer, x, cos, sin, kc, vc, pos, n_valid)
    return m.lm_head(m.model.norm(x[:, -1]))


def decode_batch(m, prompts, max_new, stops):
    c = m.c
    B, K, D = len(prompts), c["num_key_value_heads"], c["head_dim"]
    maxT = max(len(p) for p in prompts) + max_new
    caches = [(torch.zeros(B, K, maxT, D), torch.zeros(B, K, maxT, D)) for _ in m.model.layers]
    logits = []
    for b, p in enumerate(prompts):  # prefill: one forward per prompt over its tokens
        one = [(kc[b:b + 1], vc[b:b + 1]) for kc, vc in caches]
        logits.append(forward(m, torch.tensor([p]), torch.tensor([0]), one)[0])
    logits = torch.stack(logits)
    pos = torch.tensor([len(p) for p in prompts])
    live = torch.arange(B)
    n_gen = 0
    for step in range(max_new):
        tok = logits.argmax(-1)
        n_gen += len(live)
        keep = torch.tensor([int(t) not in stops for t in tok], dtype=torch.bool)
        if step == max_new - 1 or not keep.any():
            break
        live, tok, pos = live[keep], tok[keep], pos[keep]
        caches = [(kc[keep], vc[keep]) for kc, vc in caches]
        logits = forward(m, tok[:, None], pos, caches)
        pos = pos + 1
    return n_gen


def main():
    model_dir, ids_path, batch, max_new, stops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(int(sys.argv[6]) if len(sys.argv) > 6 else 1)
    stops = {int(s) for s in stops.split(",") if s}
    prompts = [json.loads(l)["ids"] for l in open(ids_path)]
    m = qwen3_ref.load_dir(model_dir).eval()
    gen = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            gen += decode_batch(m, prompts[i:i + batch], max_new, stops)
    dt = time.perf_counter() - t0
    print(json.dumps({"batch": batch, "prompts": len(prompts), "prompt_tokens": sum(map(len, prompts)), "generated_tokens": gen,
                      "seconds": round(dt, 3), "generated_tokens_per_s": round(gen / dt, 1), "prompts_per_s": round(len(prompts) / dt, 3),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
