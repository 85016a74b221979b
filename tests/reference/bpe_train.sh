#!/bin/bash
# BPE trainer against Hugging Face tokenizers: a tokenizer trained by `kdstep tokenizer train` loads
# in HF tokenizers, encodes a held-out text (special tokens inside it become their single ids) and
# decodes back to the text; training twice gives identical files; and, where `kdstep tokenize` is
# built, kdstep's own encoder gives HF's ids.
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KDSTEP=${KDSTEP:-$SRC/build/kdstep}
NODE_MODULES=$SRC/tests/.cache/node/node_modules
[ -d "$NODE_MODULES/@anush008/tokenizers" ] || bash "$SRC/tests/fetch-tokenizers.sh" >/dev/null 2>&1 || true
if [ ! -d "$NODE_MODULES/@anush008/tokenizers" ] || ! command -v node >/dev/null; then
  echo "skip: HF tokenizers for node missing (tests/fetch-tokenizers.sh needs npm)"; exit 77
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$KDSTEP" tokenizer corpus --tools "$SRC/configs/tools.json" --mb 3 --seed 1 -o "$T/train.txt"
for run in a b; do
  "$KDSTEP" tokenizer train --quiet --vocab-size 3000 --special-token '<|fim_prefix|>' -o "$T/tok_$run" "$T/train.txt"
done
cmp "$T/tok_a/tokenizer.json" "$T/tok_b/tokenizer.json" || { echo "FAIL: training twice gave different tokenizer.json"; exit 1; }
# held-out text: another seed of the corpus plus hand-written edge cases (NFC already)
"$KDSTEP" tokenizer corpus --tools "$SRC/configs/tools.json" --mb 0.2 --seed 99 -o "$T/heldout.txt"
printf '%s\n' 'Special tokens inside text: <|im_start|>user hi<|im_end|> <tool_call>{"a": 1}</tool_call> <|fim_prefix|>x' \
  'Unicode: 日本語 Ελληνικά Русский العربية हिन्दी 👩‍👩‍👧‍👦 naïve café' $'combining e\u0301 (NFC makes it one character)' \
  $'tabs\tand  spaces    and\r\nCRLF lines\n\n\n   ' 'digits 1234567890 3.14159 and ALLCAPS WORDS, it'"'"'s they'"'"'LL' >> "$T/heldout.txt"
NODE_PATH=$NODE_MODULES node "$SRC/tests/reference/bpe_train_hf.js" "$T/tok_a/tokenizer.json" "$T/heldout.txt" > "$T/hf.json"
HAVE_TOKENIZE=0
if "$KDSTEP" tokenize --help >/dev/null 2>&1; then
  HAVE_TOKENIZE=1
  "$KDSTEP" tokenize --tokenizer "$T/tok_a" < "$T/heldout.txt" > "$T/kd.json"
else
  echo "note: kdstep tokenize is not built here; only HF's side is checked"
fi
/usr/bin/python3 - "$T" "$HAVE_TOKENIZE" "$SRC" <<'PY'
import json, sys, os
T, have, src = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
hf = json.load(open(f"{T}/hf.json"))
tj = json.load(open(f"{T}/tok_a/tokenizer.json", encoding="utf-8"))
cfg = json.load(open(f"{T}/tok_a/tokenizer_config.json", encoding="utf-8"))
added = {t["content"]: t["id"] for t in tj["added_tokens"]}
fail = []
n_ids = len(tj["model"]["vocab"]) + len(added)
if n_ids != 3000: fail.append(f"vocabulary has {n_ids} ids, asked 3000")
if not hf["roundtrip"]: fail.append(f"HF decode does not round-trip: {hf.get('diff')}")
ids = hf["ids"]
for tok in ["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>"]:
    if added.get(tok) not in ids: fail.append(f"{tok} is not encoded as its single id {added.get(tok)}")
if hf["ids_special"] != ids: fail.append("ByteLevel post-processor added tokens")
special = {t["content"] for t in tj["added_tokens"] if t["special"]}
if special != {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>"}: fail.append(f"special set {special}")
if max(ids) >= n_ids: fail.append("an id beyond the vocabulary")
n_bytes = os.path.getsize(f"{T}/heldout.txt")
print(f"HF tokenizers loaded the trained tokenizer; held-out {n_bytes} bytes -> {len(ids)} tokens "
      f"({n_bytes/len(ids):.2f} bytes/token), decode round-trips: {hf['roundtrip']}")
qcfg = f"{src}/tests/.cache/tokenizers/qwen3/tokenizer_config.json"
if os.path.exists(qcfg) and json.load(open(qcfg, encoding="utf-8"))["chat_template"] != cfg["chat_template"]:
    fail.append("tokenizer_config.json chat_template differs from Qwen3's")
if have:
    kd = [json.loads(l) for l in open(f"{T}/kd.json") if l.strip()]
    kids = [i for o in kd for i in o["ids"]]
    if kids != ids:
        k = next((j for j in range(min(len(kids), len(ids))) if kids[j] != ids[j]), min(len(kids), len(ids)))
        fail.append(f"kdstep tokenize differs from HF at token {k}: kdstep {kids[k:k+5]} HF {ids[k:k+5]}")
    else:
        print(f"kdstep tokenize gives HF's {len(ids)} ids")
for f in fail: print("FAIL:", f)
sys.exit(1 if fail else 0)
PY

# Exact counts and the tie-break: recount every merge from HF's own pre-tokenization of a text.
# HF's trainer reads line by line, so blank lines are squeezed for both to see the same words.
"$KDSTEP" tokenizer corpus --mb 0.4 --seed 5 -o - 2>/dev/null | tr -s '\n' > "$T/recount.txt"
"$KDSTEP" tokenizer train --quiet --vocab-size 565 --min-frequency 1 -o "$T/tok_r" "$T/recount.txt"
NODE_PATH=$NODE_MODULES node "$SRC/tests/reference/bpe_train_words_hf.js" "$T/tok_r/tokenizer.json" "$T/recount.txt" "$T/words.json"
/usr/bin/python3 "$SRC/tests/reference/bpe_train_recount.py" "$T/tok_r/tokenizer.json" "$T/words.json" 300
