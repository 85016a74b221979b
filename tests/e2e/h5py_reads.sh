#!/usr/bin/env bash
# h5py reads dataset.h5 written by the C writer (3 shards, finalized into virtual datasets): shapes,
# dtypes, monotone offsets, masks within loss_mask, every value equal to what was written (the
# h5gen rules of tests/bench/h5gen.h, recomputed here), and the snippet in docs/dataset-format.md.
set -euo pipefail
B="${KD_BUILD_DIR:?}"; S="${KD_SOURCE_DIR:?}"
PY=/usr/bin/python3
$PY -c "import h5py" 2>/dev/null || { echo "skip: /usr/bin/python3 has no h5py"; exit 77; }
DRIVER="$B/tests/bench_h5data"
[ -x "$DRIVER" ] || { echo "FAIL: $DRIVER not built"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$DRIVER" write "$T/ds" 3 200 7
mkdir "$T/elsewhere"; cd "$T/elsewhere"   # virtual sources must resolve next to dataset.h5, not the cwd

$PY - "$T/ds" <<'PYEOF'
import sys, json, h5py, numpy as np
d = sys.argv[1]
K, N = 4, 200
f = h5py.File(d + "/dataset.h5", "r")
a = f.attrs
assert a["format_version"] == 1 and a["topk"] == K and a["num_shards"] == 3 and a["num_samples"] == N, dict(a)
assert a["tokenizer_sha256"] == "0" * 63 + "1" and a["config"] == "kd:\n  topk: 4\n"
off = f["samples/offsets"][:]
T = int(off[-1])
expect = {"samples/prompt_id": ((N,), np.int64), "samples/prompt_len": ((N,), np.int64),
          "samples/offsets": ((N + 1,), np.int64), "tokens/input_ids": ((T,), np.int32),
          "teacher/topk_ids": ((T, K), np.int32), "teacher/topk_logprobs": ((T, K), np.float32),
          "teacher/tail_logprob": ((T,), np.float32)}
for m in ("loss_mask", "tool_name_mask", "json_mask", "integration_mask"):
    expect["tokens/" + m] = ((T,), np.uint8)
for name, (shape, dt) in expect.items():
    assert f[name].shape == shape, (name, f[name].shape, shape)
    assert f[name].dtype == dt, (name, f[name].dtype, dt)
for name in ("prompt_key", "prompt", "teacher_text", "metadata"):
    assert f["text/" + name].dtype == np.uint8 and f["text/" + name + "_offsets"].shape == (N + 1,)
    assert np.all(np.diff(f["text/" + name + "_offsets"][:]) >= 0)
assert off[0] == 0 and np.all(np.diff(off) >= 0), "offsets not monotone"
assert f["tokens/input_ids"].is_virtual and not f["samples/offsets"].is_virtual
loss = f["tokens/loss_mask"][:]
for m in ("tool_name_mask", "json_mask", "integration_mask"):
    v = f["tokens/" + m][:]
    assert set(np.unique(v)) <= {0, 1} and np.all(v <= loss), m + " outside loss_mask"
pid = f["samples/prompt_id"][:]
assert sorted(pid.tolist()) == list(range(N)), "every prompt exactly once"
ids, tk, lp, tail = f["tokens/input_ids"][:], f["teacher/topk_ids"][:], f["teacher/topk_logprobs"][:], f["teacher/tail_logprob"][:]
masks = {m: f["tokens/" + m][:] for m in ("tool_name_mask", "json_mask", "integration_mask")}
def text(name, i):
    o = f["text/" + name + "_offsets"]
    return f["text/" + name][o[i]:o[i + 1]].tobytes().decode("utf-8")
for i in range(N):
    p = int(pid[i]); a0, b0 = int(off[i]), int(off[i + 1])
    n = 5 + p % 13; pl = n // 3; t = np.arange(n)
    assert b0 - a0 == n and f["samples/prompt_len"][i] == pl, (i, p)
    assert np.array_equal(ids[a0:b0], p * 100 + t)
    assert np.array_equal(loss[a0:b0], (t >= pl).astype(np.uint8))
    assert np.array_equal(masks["tool_name_mask"][a0:b0], (t == pl).astype(np.uint8))
    assert np.array_equal(masks["json_mask"][a0:b0], ((t == pl + 1) | (t == pl + 2)).astype(np.uint8))
    assert np.array_equal(masks["integration_mask"][a0:b0], ((t == n - 1) & (n - 1 > pl + 2) & (p % 4 != 0)).astype(np.uint8))
    j = np.arange(K)
    assert np.array_equal(tk[a0:b0], (p + t[:, None] + j[None, :]) % 1000)
    want_lp = (np.float32(-0.5) * (j[None, :] + 1).astype(np.float32) - np.float32(0.01) * t[:, None].astype(np.float32))
    assert np.allclose(lp[a0:b0], want_lp, atol=1e-6)
    assert np.allclose(tail[a0:b0], -4.0 - 0.001 * p, atol=1e-5)
    assert text("prompt_key", i) == "key-%d" % p and text("prompt", i) == "prompt %d \u00fc" % p
    assert text("teacher_text", i) == "teacher %d" % p and json.loads(text("metadata", i)) == {"i": p}
print("ok   h5py: shapes, dtypes, offsets, masks and all %d samples / %d tokens match" % (N, T))
PYEOF

# The documented snippet, exactly as written in docs/dataset-format.md.
awk '/<!-- snippet:h5py-load-sample/{f=1; next} f && /^```python/{g=1; next} g && /^```/{exit} g{print}' \
    "$S/docs/dataset-format.md" > "$T/snippet.py"
[ -s "$T/snippet.py" ] || { echo "FAIL: snippet not found in docs/dataset-format.md"; exit 1; }
out=$($PY "$T/snippet.py" "$T/ds" 5)
echo "$out"
$PY - "$out" <<'PYEOF'
import sys, json
r = json.loads(sys.argv[1])
# sample 5 of a 3-shard dataset written round-robin: shard 0 holds ids 0,3,6,... -> id 15
p = r["prompt_id"]; n = 5 + p % 13; pl = n // 3
assert p == 15 and r["id"] == "key-15" and r["prompt"] == "prompt 15 \u00fc", r
assert r["tokens"] == n and r["response_tokens"] == n - pl and r["tool_name_ids"] == [p * 100 + pl], r
assert r["topk_shape"] == [n, 4] and r["metadata"] == {"i": p}, r
print("ok   docs snippet loads a sample")
PYEOF
