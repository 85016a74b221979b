#!/usr/bin/python3
"""PyTorch oracle for kdstep's Qwen3 student (the test side only, never part of the product).

A short re-implementation of Hugging Face's Qwen3ForCausalLM (modeling_qwen3.py): RMSNorm, per-head
q/k RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU, tied embeddings. Module names follow
HF, so state_dict() keys are HF tensor names. Safetensors is read and written here with a few lines
of numpy (the `safetensors` package is not installed), independently of the C code.

  qwen3_ref.py check DIR [--tol-logits 1e-4 --tol-grad 1e-3 --tol-adam 1e-4]
      DIR holds kdstep's config.json, model.safetensors and out.safetensors (bench_model_ref dump).
  qwen3_ref.py batch DIR B T SEED      write DIR/batch.safetensors (ids, lengths) and, with torch,
                                       DIR/ref_logits.safetensors
  qwen3_ref.py compare-logits DIR C_LOGITS.safetensors
  qwen3_ref.py compare-batch DIR C_LOGITS.safetensors   torch on DIR/batch.safetensors vs C_LOGITS
  qwen3_ref.py write-dtype DIR OUTDIR {F16,BF16}   rewrite DIR's weights in another dtype
  qwen3_ref.py bench CONFIG B T STEPS  training-step throughput of this reference (prints JSON)
"""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DT = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2)}


def st_read(path):
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    (n,) = struct.unpack("<Q", buf[:8].tobytes())
    header = json.loads(buf[8 : 8 + n].tobytes())
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = buf[base + b : base + e]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DT[info["dtype"]][0]).astype(np.float32)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]))  # astype made a private copy
    return out, header


def st_write(path, tensors, dtype="F32"):
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name, t in tensors.items():
        a = t.detach().contiguous().float().numpy()
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:  # BF16, round to nearest even
            u = a.view(np.uint32).astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            raw = u.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read_dir(d):
    """The weights of a Hugging Face folder: model.safetensors, or the shards its
    model.safetensors.index.json names (weight_map: tensor name -> file), each read by st_read."""
    import os
    if os.path.exists(f"{d}/model.safetensors"):
        return st_read(f"{d}/model.safetensors")[0]
    index = json.load(open(f"{d}/model.safetensors.index.json"))
    out = {}
    for f in sorted(set(index["weight_map"].values())):
        assert "/" not in f, f
        part, _ = st_read(f"{d}/{f}")
        for name in part:
            assert index["weight_map"].get(name) == f, (name, f)
        out.update(part)
    assert set(out) == set(index["weight_map"]), "the index and the shards disagree"
    return out


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, H, K, D = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.H, self.K, self.D = H, K, D
        self.q_proj = nn.Linear(C, H * D, bias=False)
        self.k_proj = nn.Linear(C, K * D, bias=False)
        self.v_proj = nn.Linear(C, K * D, bias=False)
        self.o_proj = nn.Linear(H * D, C, bias=False)
        self.q_norm = RMSNorm(D, c["rms_norm_eps"])
        self.k_norm = RMSNorm(D, c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.H, self.D)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.K, self.D)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.K, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.H // self.K
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.D)
        s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, I = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Qwen3ForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        c = dict(c)
        c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
        self.c = c
        self.model = Body(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids, lengths=None):
        B, T = ids.shape
        D = self.c["head_dim"]
        # HF's rotary embedding, in float32
        inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
        freqs = torch.arange(T).float()[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        if lengths is None:
            lengths = torch.full((B,), T)
        keyok = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
        mask = (causal[None, :, :] & keyok[:, None, :])[:, None, :, :]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


def load_dir(d):
    c = json.load(open(f"{d}/config.json"))
    assert c["architectures"] == ["Qwen3ForCausalLM"] and c["model_type"] == "qwen3", c
    assert "rope_theta" in c and c.get("rope_scaling", "missing") is None, "config.json needs top-level rope_theta and rope_scaling null"
    # no random init: every weight comes from the file (saves minutes on the 0.6B shape)
    saved = nn.init.kaiming_uniform_, nn.init.normal_
    nn.init.kaiming_uniform_ = nn.init.normal_ = lambda t, *a, **k: t
    try:
        m = Qwen3ForCausalLM(c)
    finally:
        nn.init.kaiming_uniform_, nn.init.normal_ = saved
    sd = st_read_dir(d)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and c.get("tie_word_embeddings"))]
    assert not missing and not unexpected, (missing, unexpected)
    return m


def rel(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


def ce(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=-1)


def optimizer(m, lr, foreach=None):
    params = dict(m.named_parameters())  # tied weights appear once
    decay = [p for n, p in params.items() if p.dim() == 2]
    nodecay = [p for n, p in params.items() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=foreach)


def check(d, tol_logits=1e-4, tol_grad=1e-3, tol_adam=1e-4):
    torch.set_num_threads(1)
    m = load_dir(d)
    out, _ = st_read(f"{d}/out.safetensors")
    ids, lengths, targets = out["ids"].long(), out["lengths"].long(), out["targets"].long()
    logits = m(ids, lengths)
    loss = ce(logits, targets)
    loss.backward()
    ok = True
    valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    r = rel(out["logits"][valid], logits.detach()[valid])
    print(f"logits (valid rows)      max rel diff {r:.2e}  {'OK' if r <= tol_logits else 'FAIL'}")
    ok &= r <= tol_logits
    for i, name in enumerate(["loss", "loss (chunked, no logits)"]):
        rl = abs(out["loss"][i].item() - loss.item()) / abs(loss.item())
        print(f"{name:24s} kdstep {out['loss'][i].item():.7f} torch {loss.item():.7f} rel {rl:.2e}  {'OK' if rl <= tol_logits else 'FAIL'}")
        ok &= rl <= tol_logits
    sd = dict(m.named_parameters())
    for name, p in sd.items():
        g = out[f"grad.{name}"]
        r = rel(g, p.grad)
        print(f"grad {name:48s} max|d| {(g - p.grad).abs().max().item():.2e} rel {r:.2e}  {'OK' if r <= tol_grad else 'FAIL'}")
        ok &= r <= tol_grad
    n_grads = sum(1 for k in out if k.startswith("grad."))
    assert n_grads == len(sd), (n_grads, len(sd))
    # 10 AdamW steps on the same batch, same hyper-parameters as the C driver
    m = load_dir(d)
    opt = optimizer(m, out["loss"][2].item())
    for step, cl in enumerate(out["adam_losses"].tolist()):
        opt.zero_grad()
        loss = ce(m(ids, lengths), targets)
        loss.backward()
        opt.step()
        rl = abs(cl - loss.item()) / abs(loss.item())
        print(f"adamw step {step + 1:2d} kdstep {cl:.7f} torch {loss.item():.7f} rel {rl:.2e}  {'OK' if rl <= tol_adam else 'FAIL'}")
        ok &= rl <= tol_adam
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


def batch(d, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    c = json.load(open(f"{d}/config.json"))
    ids = torch.randint(0, c["vocab_size"], (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    st_write(f"{d}/batch.safetensors", {"ids": ids.float(), "lengths": lengths.float()})
    with torch.no_grad():
        logits = load_dir(d)(ids, lengths)
    st_write(f"{d}/ref_logits.safetensors", {"logits": logits, "lengths": lengths.float()})
    return 0


def compare_batch(d, cpath, tol=1e-4):
    """torch logits on DIR/batch.safetensors vs kdstep's logits in cpath"""
    torch.set_num_threads(2)
    b, _ = st_read(f"{d}/batch.safetensors")
    m = load_dir(d)
    with torch.no_grad():
        ref = m(b["ids"].long(), b["lengths"].long())
    got, _ = st_read(cpath)
    lengths = b["lengths"].long()
    valid = torch.arange(ref.shape[1])[None, :] < lengths[:, None]
    r = rel(got["logits"][valid], ref[valid])
    print(f"logits vs torch on the same checkpoint: max rel diff {r:.2e}  {'OK' if r <= tol else 'FAIL'}")
    return 0 if r <= tol else 1


def compare_logits(d, cpath, tol=1e-4):
    ref, _ = st_read(f"{d}/ref_logits.safetensors")
    got, _ = st_read(cpath)
    lengths = ref["lengths"].long()
    valid = torch.arange(ref["logits"].shape[1])[None, :] < lengths[:, None]
    r = rel(got["logits"][valid], ref["logits"][valid])
    print(f"logits of the checkpoint: max rel diff {r:.2e}  {'OK' if r <= tol else 'FAIL'}")
    return 0 if r <= tol else 1


def write_dtype(d, outd, dtype):
    import os
    import shutil
    os.makedirs(outd, exist_ok=True)
    shutil.copy(f"{d}/config.json", f"{outd}/config.json")
    sd, _ = st_read(f"{d}/model.safetensors")
    st_write(f"{outd}/model.safetensors", sd, dtype)
    return 0


def bench(cfg_path, B, T, steps):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    c = json.load(open(cfg_path))
    m = Qwen3ForCausalLM(c)
    opt = optimizer(m, 1e-3, foreach=True)  # the multi-tensor AdamW: PyTorch's fastest on CPU
    ids = torch.randint(0, c["vocab_size"], (B, T))
    tg = torch.roll(ids, -1, 1)
    import os
    clock = time.process_time if os.environ.get("KD_BENCH_CPUTIME") == "1" else time.perf_counter
    times = []
    for s in range(steps + 1):
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss = ce(m(ids), tg)
        loss.backward()
        opt.step()
        times.append(clock() - t0)
    best = min(times[1:])
    import resource
    print(json.dumps({"torch_tok_s": B * T / best, "torch_step_s": best, "torch_threads": torch.get_num_threads(),
                      "torch_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "check":
        sys.exit(check(a[1]))
    if a and a[0] == "batch":
        sys.exit(batch(a[1], int(a[2]), int(a[3]), int(a[4])))
    if a and a[0] == "compare-batch":
        sys.exit(compare_batch(a[1], a[2]))
    if a and a[0] == "compare-logits":
        sys.exit(compare_logits(a[1], a[2]))
    if a and a[0] == "write-dtype":
        sys.exit(write_dtype(a[1], a[2], a[3]))
    if a and a[0] == "bench":
        sys.exit(bench(a[1], int(a[2]), int(a[3]), int(a[4])))
    print(__doc__)
    sys.exit(2)
