#!/usr/bin/python3
"""PyTorch reference for src/train/loss.c.

Reads the cases that `bench_loss ref DIR` wrote (inputs, our loss sums and our gradients), recomputes
every loss in float64 with torch autograd from its definition (docs/losses.md), and fails unless the
per-token loss and the per-token gradient (dlogits / grad_scale) agree within 1e-5. For the grammar term
the set of invalid tokens is recomputed here independently with Python's json module: a text is a valid
JSON prefix iff some completion parses.
"""
import json
import os
import sys

import numpy as np
import torch

TOL = 1e-5
FLOOR = -100.0


def load(d, case, name, dtype, shape):
    return np.fromfile(os.path.join(d, f"{case}_{name}.bin"), dtype=dtype).reshape(shape)


def targets(mask, B, T):
    """(row, target position) pairs: a mask bit at t >= 1 selects logits row t - 1."""
    out = []
    for b in range(B):
        for t in range(1, T):
            j = b * T + t
            if mask[j]:
                out.append((j - 1, j))
    return out


def ce_ref(z, ids, mask, B, T, V):
    loss = torch.zeros((), dtype=torch.float64)
    for r, j in targets(mask, B, T):
        loss = loss - torch.log_softmax(z[r], 0)[int(ids[j])]
    return loss


def kd_ref(z, ids, mask, B, T, V, c, d):
    K, Tt, beta, div = c["K"], float(np.float32(c["temperature"])), float(np.float32(c["beta"])), c["divergence"]
    tid = load(d, c["name"], "tid", np.int32, (B * T, K))
    tlp = load(d, c["name"], "tlp", np.float32, (B * T, K)).astype(np.float64)
    tail = load(d, c["name"], "tail", np.float32, (B * T,)).astype(np.float64)
    has = load(d, c["name"], "has", np.uint8, (B * T,))
    loss = torch.zeros((), dtype=torch.float64)
    fallback = 0
    for r, j in targets(mask, B, T):
        # buckets: distinct ids (a repeat adds its mass), ids the student lacks go to the tail
        mass, extra_tail = {}, 0.0
        for k in range(K):
            v, l = int(tid[j, k]), tlp[j, k]
            if np.isnan(l):
                continue
            if v < 0 or v >= V:
                extra_tail += np.exp(l)
            else:
                mass[v] = mass.get(v, 0.0) + np.exp(l)
        buckets = list(mass)
        seen = set(buckets)
        lq = [max(np.log(mass[v]) if mass[v] > 0 else -np.inf, FLOOR) for v in buckets]
        if not has[j] or not buckets or np.isnan(tail[j]):
            fallback += 1
            loss = loss - torch.log_softmax(z[r], 0)[int(ids[j])]
            continue
        s = torch.log_softmax(z[r] / Tt, 0)
        rest = torch.tensor([v for v in range(V) if v not in seen], dtype=torch.long)
        lp = torch.cat([s[torch.tensor(buckets)], torch.logsumexp(s[rest], 0).reshape(1)])
        with np.errstate(divide="ignore"):
            lq.append(max(np.log(np.exp(tail[j]) + extra_tail), FLOOR))
        lq = torch.log_softmax(torch.tensor(lq, dtype=torch.float64) / Tt, 0)
        q, p = lq.exp(), lp.exp()
        if div == "forward_kl":
            D = (q * (lq - lp)).sum()
        elif div == "reverse_kl":
            D = (p * (lp - lq)).sum()
        else:
            m = beta * q + (1 - beta) * p
            D = beta * (q * (lq - m.log())).sum() + (1 - beta) * (p * (lp - m.log())).sum()
        assert D.item() >= -1e-12, "a divergence came out negative"
        loss = loss + Tt * Tt * D
    assert fallback == c["fallback"], f"fallback count {c['fallback']} != reference {fallback}"
    return loss


# ---- grammar: independent JSON-prefix validity by completion search with Python's json module


def parses(b):
    try:
        json.loads(b.decode("utf-8"), parse_constant=lambda x: (_ for _ in ()).throw(ValueError(x)))
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def closers(b):
    """Closing brackets for the containers open at the end of b (strings and escapes skipped)."""
    stack, in_str, esc = [], False, False
    for ch in b:
        c = chr(ch)
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    return "".join(reversed(stack)).encode()


FIXES = [b"", b"0", b'"', b'n"', b'0041"', b'041"', b'41"', b'1"', b'\\uDC00"', b'uDC00"', b'DC00"', b'C00"',
         b'00"', b'0"', b'\x80"', b'\x80\x80"', b'\x80\x80\x80"', b'\xa0\x80"', b'\x90\x80\x80"', b"rue", b"ue",
         b"e", b"alse", b"lse", b"se", b"ull", b"ll", b"l"]
TAILS = [b"", b":0", b"0", b'"":0', b'":0']


def valid_prefix(p, cache={}):
    if p in cache:
        return cache[p]
    ok = False
    for x in FIXES:
        for y in TAILS:
            t = p + x + y
            if parses(t + closers(t)):
                ok = True
                break
        if ok:
            break
    cache[p] = ok
    return ok


def grammar_ref(z, ids, mask, B, T, V, vocab):
    loss = torch.zeros((), dtype=torch.float64)
    scored = skipped = 0
    for b in range(B):
        prefix, live = None, False
        for t in range(T):
            j = b * T + t
            if not mask[j]:
                live = False
                continue
            y = int(ids[j])
            if t == 0 or not mask[j - 1]:
                prefix, live = b"", True
            ok = False
            if live and t >= 1 and valid_prefix(prefix + vocab[y]):
                valid = [v for v in range(V) if valid_prefix(prefix + vocab[v])]
                zr = z[j - 1]
                loss = loss + torch.logsumexp(zr, 0) - torch.logsumexp(zr[torch.tensor(valid)], 0)
                ok = True
                scored += 1
            if t >= 1 and not ok:
                skipped += 1
            if not live:
                continue
            if valid_prefix(prefix + vocab[y]):
                prefix += vocab[y]
            elif prefix == b"" and (t == 0 or not mask[j - 1]):
                live = False
                for k in range(1, len(vocab[y])):
                    if valid_prefix(vocab[y][k:]):
                        prefix, live = vocab[y][k:], True
                        break
            else:
                live = False
    return loss, scored, skipped


def main():
    d = sys.argv[1]
    cases = json.load(open(os.path.join(d, "cases.json")))
    failures = 0
    print(f"{'case':<18} {'count':>5} {'loss/tok ours':>14} {'loss/tok torch':>14} {'|dloss|':>9} {'max|dgrad|':>10}")
    for c in cases:
        name, B, T, V = c["name"], c["B"], c["T"], c["V"]
        N = B * T
        logits = load(d, name, "logits", np.float32, (N, V))
        ours_grad = load(d, name, "dlogits", np.float32, (N, V)).astype(np.float64)
        ids = load(d, name, "ids", np.int32, (N,))
        mask = load(d, name, "mask", np.uint8, (N,))
        z = torch.tensor(logits.astype(np.float64), requires_grad=True)
        count = len(targets(mask, B, T))
        if c["kind"] == "ce":
            loss = ce_ref(z, ids, mask, B, T, V)
        elif c["kind"] == "kd":
            loss = kd_ref(z, ids, mask, B, T, V, c, d)
        else:
            vocab = [bytes.fromhex(h) for h in c["vocab"]]
            loss, scored, skipped = grammar_ref(z, ids, mask, B, T, V, vocab)
            if skipped != c["skipped"] or scored + skipped != count:
                print(f"{name}: skipped {c['skipped']} != reference {skipped} (scored {scored})")
                failures += 1
        loss.backward()
        ref_grad = z.grad.numpy()  # d(sum)/d(logits)
        scale = float(np.float32(c["grad_scale"]))
        dl = abs(c["loss_sum"] / count - loss.item() / count)
        dg = float(np.abs(ours_grad / scale - ref_grad).max())
        ok = count == c["count"] and dl <= TOL and dg <= TOL
        print(f"{name:<18} {count:>5} {c['loss_sum'] / count:>14.8f} {loss.item() / count:>14.8f} {dl:>9.2e} {dg:>10.2e}"
              f"{'' if ok else '  FAIL'}")
        failures += not ok
    print(json.dumps({"cases": len(cases), "failures": failures, "tolerance": TOL}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
