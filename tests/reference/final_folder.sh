#!/usr/bin/env bash
# final/ is a model folder others load. Three `kdstep train` runs of the same tiny student write
# final/ as float32, as bfloat16, and as bfloat16 in 3 shards + model.safetensors.index.json. Then:
# - each final/ holds exactly config.json (torch_dtype), the weights, generation_config.json (eos ids
#   = <|im_end|>, <|endoftext|>; pad id), tokenizer.json, tokenizer_config.json (chat_template);
# - the bf16 weights are the fp32 ones rounded to nearest even (numpy, bit arithmetic);
# - an independent loader (tests/reference/qwen3_ref.py: PyTorch, reading the safetensors format and
#   the shard index itself) gives the logits kdstep gives on the same folder, within 1e-4 relative,
#   for fp32, bf16 and the sharded bf16 folder (which loads identically to the single file);
# - with python3-transformers + python3-safetensors installed, AutoModelForCausalLM too (Debian 12
#   does not package them: the script says so and skips that part).
set -euo pipefail
PY=/usr/bin/python3
$PY -c 'import torch' 2>/dev/null || { echo "skip: torch not importable by $PY"; exit 77; }
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
DRV="$KD_BUILD_DIR/tests/bench_model_ref"
REF="$KD_SOURCE_DIR/tests/reference/qwen3_ref.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
jq '.[0:2]' "$S/configs/tools.json" >"$tmp/tools.json"
serve_tokenizer "$tmp/tok" "$tmp/tools.json"
"$K" prompts synth --tools "$tmp/tools.json" -n 12 --seed 3 -o "$tmp/p.jsonl" >/dev/null 2>&1
"$K" generate --prompts "$tmp/p.jsonl" --out "$tmp/ds" --tools "$tmp/tools.json" --tokenizer-path "$tmp/tok" >/dev/null 2>"$tmp/gen.err" || { cat "$tmp/gen.err"; exit 1; }
train() { # NAME [--set ...]
  local name=$1; shift
  KDSTEP_THREADS=1 "$K" train --train-data "$tmp/ds" --out "$tmp/$name" --tokenizer-path "$tmp/tok" --set model.preset=tiny \
    --set train.seq_len=128 --set train.micro_batch=2 --set train.steps=3 --set train.warmup_steps=1 --set train.eval_every=0 \
    "$@" >/dev/null 2>"$tmp/$name.err" || { cat "$tmp/$name.err"; exit 1; }
}
train f32
train bf16 --set train.save_dtype=bfloat16
# a max_shard_size that gives 3 shards for these bf16 weights, by Hugging Face's rule (tensors in
# order; a shard closes when the next tensor would overflow it), from the f32 file's header
limit=$($PY - "$tmp/f32/final/model.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
sizes = [(v["data_offsets"][1] - v["data_offsets"][0]) // 2 for k, v in h.items() if k != "__metadata__"]
def shards(limit):
    n, used = 0, 0
    for i, s in enumerate(sizes):
        if i == 0 or (used > 0 and used + s > limit): n, used = n + 1, 0
        used += s
    return n
print(next(l for l in range(max(sizes), sum(sizes) + 1, 64) if shards(l) == 3))
PY
)
train shards --set train.save_dtype=bfloat16 --set train.max_shard_size=$limit
want="config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json"
[[ "$(cd "$tmp/f32/final" && echo *)" == "$want" ]] || { echo "f32 final/ holds: $(cd "$tmp/f32/final" && echo *)"; exit 1; }
[[ "$(cd "$tmp/bf16/final" && echo *)" == "$want" ]] || { echo "bf16 final/ holds: $(cd "$tmp/bf16/final" && echo *)"; exit 1; }
want3="config.json generation_config.json model-00001-of-00003.safetensors model-00002-of-00003.safetensors model-00003-of-00003.safetensors model.safetensors.index.json tokenizer.json tokenizer_config.json"
[[ "$(cd "$tmp/shards/final" && echo *)" == "$want3" ]] || { echo "sharded final/ holds: $(cd "$tmp/shards/final" && echo *)"; exit 1; }
echo "ok   final/ holds exactly: $want (sharded: 3 shards + index)"
$PY - "$REF" "$tmp" <<'PY'
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
t = sys.argv[2]
tok = json.load(open(f"{t}/f32/final/tokenizer.json"))
ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
for run, dtype in (("f32", "float32"), ("bf16", "bfloat16"), ("shards", "bfloat16")):
    d = f"{t}/{run}/final"
    c = json.load(open(f"{d}/config.json"))
    assert c["torch_dtype"] == dtype and c["architectures"] == ["Qwen3ForCausalLM"], c
    g = json.load(open(f"{d}/generation_config.json"))
    assert g["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]] and g["pad_token_id"] == ids["<|endoftext|>"], g
    tc = json.load(open(f"{d}/tokenizer_config.json"))
    assert "<tool_call>" in tc["chat_template"] and tc["eos_token"] == "<|im_end|>", tc.keys()
# bf16 = fp32 rounded to nearest even, computed here on the bits
w32 = ref.st_read_dir(f"{t}/f32/final")
for run in ("bf16", "shards"):
    w16 = ref.st_read_dir(f"{t}/{run}/final")
    assert set(w16) == set(w32)
    for name, x in w32.items():
        u = x.numpy().view(np.uint32).astype(np.uint64)
        want = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
        assert np.array_equal(w16[name].numpy(), want), (run, name)
hdr = {}
for i in (1, 2, 3):
    _, h = ref.st_read(f"{t}/shards/final/model-0000{i}-of-00003.safetensors")
    assert all(v["dtype"] == "BF16" for k, v in h.items() if k != "__metadata__")
print("ok   config torch_dtype, generation_config eos/pad ids, chat template; bf16 (single and sharded) = RNE(fp32) bit for bit")
PY
for run in f32 bf16 shards; do
  cp -r "$tmp/$run/final" "$tmp/$run.m"  # batch.safetensors is written next to the weights
  $PY "$REF" batch "$tmp/$run.m" 3 48 11 >/dev/null
  "$DRV" logits "$tmp/$run.m" "$tmp/$run.logits.safetensors" >/dev/null
  echo -n "$run: "; $PY "$REF" compare-batch "$tmp/$run.m" "$tmp/$run.logits.safetensors"
done
# the sharded folder loads identically to the single-file one (same bf16 weights): the same logits, bitwise
cp "$tmp/bf16.m/batch.safetensors" "$tmp/shards.m/batch.safetensors"
"$DRV" logits "$tmp/shards.m" "$tmp/shards.same.safetensors" >/dev/null
cmp "$tmp/bf16.logits.safetensors" "$tmp/shards.same.safetensors"
echo "ok   the 3-shard folder gives kdstep bit-identical logits to the single-file one"
if $PY -c 'import transformers, safetensors' 2>/dev/null; then
  $PY - "$tmp" <<'PY'
import sys, torch
from transformers import AutoModelForCausalLM
t = sys.argv[1]
import importlib.util
for run in ("f32", "bf16", "shards"):
    m = AutoModelForCausalLM.from_pretrained(f"{t}/{run}/final", torch_dtype=torch.float32)
    print(f"ok   AutoModelForCausalLM loads {run}/final ({type(m).__name__})")
PY
else
  cand=$(apt-cache policy python3-transformers 2>/dev/null | awk '/Candidate/ {print $2}')
  echo "skip (AutoModelForCausalLM part only): python3-transformers/python3-safetensors are not installed; Debian's candidate: ${cand:-none (not packaged in Debian $(cat /etc/debian_version 2>/dev/null))}"
fi
echo "final_folder: all checks passed"
