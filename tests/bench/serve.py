#!/usr/bin/python3
"""Decode speed of `kdstep serve` against PyTorch with a KV cache on the same weights (tests/bench/serve.sh).

usage: serve.py PORT MODEL_DIR NEW_TOKENS THREADS SERVER_PID
Prints one JSON line: kdstep batch-1 decode tok/s (streamed: tokens after the first / time after the
first), PyTorch batch-1 decode tok/s with a KV cache (tests/reference/qwen3_ref.py's modules, the
same safetensors), their ratio, and 8 concurrent requests' aggregate tok/s against batch 1."""
import http.client, json, math, os, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import torch
import qwen3_ref as ref

port, model_dir, new, threads, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


def server_cpu():
    """CPU seconds the server process has used (user + system): on a shared machine, tokens per
    CPU-second compare configurations that wall-clock seconds cannot."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
PROMPT = "<|im_start|>user\nWhat is the weather in Paris today, and should I take an umbrella?<|im_end|>\n<|im_start|>assistant\n"


def request(stream):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"model": "m", "prompt": PROMPT, "max_tokens": new, "temperature": 0, "ignore_eos": True, "stream": stream}
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    first = None
    if stream:
        chunks = 0
        for line in r:
            if line.startswith(b"data: {"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
        r.close()
    else:
        json.loads(r.read())
    return t0, first, time.perf_counter()


def kdstep_batch1(reps=3):
    best, e2e, cpu = 0.0, 0.0, 0.0
    for _ in range(reps):
        c0 = server_cpu()
        t0, first, t1 = request(True)
        best = max(best, (new - 1) / (t1 - first))
        e2e = max(e2e, new / (t1 - t0))
        cpu = max(cpu, new / max(server_cpu() - c0, 1e-9))
    return best, e2e, cpu


def kdstep_concurrent(n=8, reps=3):
    """best of reps, as the batch-1 figure"""
    runs = [kdstep_concurrent_once(n) for _ in range(reps)]
    return max(r[0] for r in runs), max(r[1] for r in runs)


def kdstep_concurrent_once(n):
    out = [None] * n
    def go(i):
        out[i] = request(False)
    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    c0, t0 = server_cpu(), time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return n * new / (time.perf_counter() - t0), n * new / max(server_cpu() - c0, 1e-9)


@torch.no_grad()
def torch_decode(reps=3):
    torch.set_num_threads(threads)
    m = ref.load_dir(model_dir).eval()
    c = m.c
    D, H, K = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    ids = torch.randint(0, c["vocab_size"], (20,), generator=torch.Generator().manual_seed(1))

    def step(tok, pos, cache):
        ang = pos * inv
        emb = torch.cat((ang, ang))
        cos, sin = emb.cos(), emb.sin()
        x = m.model.embed_tokens(tok.view(1, 1))
        for l, layer in enumerate(m.model.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_norm(a.q_proj(h).view(1, 1, H, D)).transpose(1, 2)
            k = a.k_norm(a.k_proj(h).view(1, 1, K, D)).transpose(1, 2)
            v = a.v_proj(h).view(1, 1, K, D).transpose(1, 2)
            q = q * cos + ref.rotate_half(q) * sin
            k = k * cos + ref.rotate_half(k) * sin
            if cache[l] is None:
                cache[l] = (k, v)
            else:
                cache[l] = (torch.cat((cache[l][0], k), 2), torch.cat((cache[l][1], v), 2))
            kk, vv = cache[l]
            g = H // K
            kk, vv = kk.repeat_interleave(g, 1), vv.repeat_interleave(g, 1)
            p = torch.softmax((q @ kk.transpose(-1, -2)) / math.sqrt(D), -1)
            x = x + a.o_proj((p @ vv).transpose(1, 2).reshape(1, 1, H * D))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return m.lm_head(m.model.norm(x))[0, -1]

    best, cpu = 0.0, 0.0
    for _ in range(reps):
        cache = [None] * len(m.model.layers)
        for i, t in enumerate(ids):
            lg = step(t, i, cache)
        tok = lg.argmax()
        t0, c0 = time.perf_counter(), time.process_time()
        for j in range(new - 1):
            lg = step(tok, len(ids) + j, cache)
            tok = lg.argmax()
        best = max(best, (new - 1) / (time.perf_counter() - t0))
        cpu = max(cpu, (new - 1) / max(time.process_time() - c0, 1e-9))
    return best, cpu


request(False)  # warm-up
k1, k1_e2e, k1_cpu = kdstep_batch1()
tt, tt_cpu = torch_decode()
k8, k8_cpu = kdstep_concurrent()
print(json.dumps({"new_tokens": new, "threads": threads, "load_avg_1m": os.getloadavg()[0],
                  "kdstep_b1_decode_tok_s": round(k1, 1), "kdstep_b1_end_to_end_tok_s": round(k1_e2e, 1),
                  "torch_kv_b1_decode_tok_s": round(tt, 1), "kdstep_over_torch": round(k1 / tt, 2),
                  "kdstep_8_concurrent_tok_s": round(k8, 1), "concurrent8_over_b1_wall": round(k8 / k1_e2e, 2),
                  "kdstep_b1_tok_per_cpu_s": round(k1_cpu, 1), "torch_b1_tok_per_cpu_s": round(tt_cpu, 1),
                  "kdstep_over_torch_cpu": round(k1_cpu / tt_cpu, 2), "kdstep_8_concurrent_tok_per_cpu_s": round(k8_cpu, 1),
                  "concurrent8_over_b1_cpu": round(k8_cpu / k1_cpu, 2)}))
