#!/usr/bin/env bash
# Eval decoding throughput on the demo's held-out set with the demo's student (run jobs/quickstart.sh
# first): `kdstep eval` at eval.batch 1, 8 and 32 on one rank and one thread, beside PyTorch with a KV
# cache (tests/bench/decode_torch.py, on tests/reference/qwen3_ref.py's modules, one thread) at batch
# 1 and 8 on the same weights and the same prompt token ids, in one run. Greedy, the demo's settings
# (eval.max_new_tokens 96, train.prompt_window 128). Prints figures, then one JSON line.
#   env: RUN (runs/demo: its train/final and heldout.jsonl), MAX_PROMPTS (0 = all),
#        OLD_KDSTEP (optional: another kdstep binary, e.g. a build of an older commit, run at its
#        default batch beside the others)
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${KD_BUILD_DIR:-$SRC/build}
K=${KDSTEP:-$BLD/kdstep}
RUN=${RUN:-$SRC/runs/demo}
MAX_PROMPTS=${MAX_PROMPTS:-0}
model="$RUN/train/final" held="$RUN/heldout.jsonl"
[[ -s "$model/model.safetensors" && -s "$held" ]] || { echo "decode: skipped: $model or $held is missing (run jobs/quickstart.sh first)" >&2; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ; load: $(cut -d' ' -f1-3 /proc/loadavg)"
export KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
flags=(--model "$model" --prompts "$held" --tools "$SRC/configs/tools.json" --config "$SRC/configs/process_supervision.yaml"
       --set train.prompt_window=128 --set eval.max_new_tokens=96)
((MAX_PROMPTS > 0)) && flags+=(--max-prompts "$MAX_PROMPTS")
for b in 1 8 32; do
  extra=(); [[ $b == 1 ]] && extra=(env KDSTEP_EVAL_PROMPT_IDS="$tmp/ids.jsonl")
  "${extra[@]}" "$K" eval "${flags[@]}" --set eval.batch=$b --out "$tmp/b$b" >/dev/null 2>"$tmp/b$b.err" || { tail -5 "$tmp/b$b.err"; exit 1; }
  grep "tokens generated in" "$tmp/b$b.err" | sed "s/^/batch $b: /" >&2
done
cmp -s "$tmp/b1/predictions.jsonl" "$tmp/b8/predictions.jsonl" && cmp -s "$tmp/b1/predictions.jsonl" "$tmp/b32/predictions.jsonl" \
  || { echo "decode: batched predictions differ from batch 1" >&2; exit 1; }
old=null
if [[ -n "${OLD_KDSTEP:-}" ]]; then
  "$OLD_KDSTEP" eval "${flags[@]}" --out "$tmp/old" >/dev/null 2>"$tmp/old.err" || { tail -5 "$tmp/old.err"; exit 1; }
  old="$tmp/old/eval.json"
fi
stops=$(printf '<|im_end|>\n<|endoftext|>\n' | "$K" tokenize --tokenizer "$model" --lines | jq -r '.ids | select(length == 1) | .[0]' | paste -sd,)
for b in 1 8; do
  /usr/bin/python3 "$SRC/tests/bench/decode_torch.py" "$model" "$tmp/ids.jsonl" $b 96 "$stops" 1 >"$tmp/torch$b.json"
  echo "torch batch $b: $(cat "$tmp/torch$b.json")" >&2
done
/usr/bin/python3 - "$tmp" "$old" <<'PYEOF'
import json, sys
tmp, old = sys.argv[1], sys.argv[2]
k = {b: json.load(open(f"{tmp}/b{b}/eval.json")) for b in (1, 8, 32)}
t = {b: json.loads(open(f"{tmp}/torch{b}.json").read()) for b in (1, 8)}
o = json.load(open(old)) if old != "null" else None
gen = lambda e: e["generated_tokens_per_s"]
pps = lambda e: e["count"] / e["decode_seconds"]
assert t[1]["prompt_tokens"] == k[1]["prompt_tokens"], "torch and kdstep decode different prompts"
out = {"prompts": k[1]["count"], "prompt_tokens": k[1]["prompt_tokens"], "generated_tokens": k[1]["generated_tokens"]}
for b in (1, 8, 32):
    out[f"kdstep_b{b}_gen_tok_s"] = round(gen(k[b]), 1)
    out[f"kdstep_b{b}_prompts_s"] = round(pps(k[b]), 2)
for b in (1, 8):
    out[f"torch_b{b}_gen_tok_s"] = t[b]["generated_tokens_per_s"]
    out[f"torch_b{b}_prompts_s"] = t[b]["prompts_per_s"]
out["b32_over_b1"] = round(gen(k[32]) / gen(k[1]), 2)
out["kdstep_b1_over_torch_b1"] = round(gen(k[1]) / t[1]["generated_tokens_per_s"], 2)
if o:
    out["old_gen_tok_s"] = round(gen(o), 1)
    out["b32_over_old"] = round(gen(k[32]) / gen(o), 2)
    out["old_predictions_equal"] = open(f"{tmp}/old/predictions.jsonl").read() == open(f"{tmp}/b1/predictions.jsonl").read()
print(f"kdstep gen tok/s: batch 1 {out['kdstep_b1_gen_tok_s']}, 8 {out['kdstep_b8_gen_tok_s']}, 32 {out['kdstep_b32_gen_tok_s']} "
      f"(x{out['b32_over_b1']} at 32); torch+KV batch 1 {out['torch_b1_gen_tok_s']}, 8 {out['torch_b8_gen_tok_s']}; "
      f"kdstep/torch at batch 1 x{out['kdstep_b1_over_torch_b1']}" + (f"; old binary {out['old_gen_tok_s']} (b32 x{out['b32_over_old']})" if o else ""))
print(json.dumps(out))
PYEOF
