#!/usr/bin/env bash
# kdstep train / kdstep plot from the command line: usage, every bad-input error before any step
# (tokenizer hash mismatch, empty dataset, unknown divergence, a run folder that already holds
# checkpoints, pretrained without a path), the truncation report, the seed fallback (samples
# without JSON masks get spans extracted from their text), the NaN/Inf skip-and-abort, and the plot.
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_data "$tmp" 60
T="$KDSTEP train $(tiny_flags) --tokenizer-path $tmp/tok"
fail() { echo "FAIL: $*"; exit 1; }
expect_err() { # expected-substring command...
  local want="$1"; shift
  set +e; "$@" >"$tmp/out" 2>&1; local rc=$?; set -e
  (( rc != 0 )) || { cat "$tmp/out"; fail "exit 0 for: $*"; }
  grep -qF -- "$want" "$tmp/out" || { cat "$tmp/out"; fail "no '$want' for: $*"; }
}

"$KDSTEP" train --help | grep -q "^usage: kdstep train" || fail "train --help"
"$KDSTEP" plot --help | grep -q "^usage: kdstep plot" || fail "plot --help"
set +e; "$KDSTEP" train --bogus >/dev/null 2>&1; rc=$?; set -e; (( rc == 2 )) || fail "unknown flag exit $rc"
expect_err "--train-data DIR is required" "$KDSTEP" train --out "$tmp/x"

# tokenizer hash mismatch
"$KDSTEP" tokenizer train --vocab-size 900 --quiet -o "$tmp/tok2" "$tmp/corpus.txt" >/dev/null
expect_err "was tokenized with a different tokenizer" $KDSTEP train $(tiny_flags) --tokenizer-path "$tmp/tok2" --train-data "$tmp/ds" --out "$tmp/r1"
[[ ! -e "$tmp/r1/metrics.jsonl" ]] || fail "a step ran despite the tokenizer mismatch"
# empty dataset
"$MAKEDATA" "$tmp/tok" "$KD_SOURCE_DIR/configs/tools.json" 0 "$tmp/empty" >/dev/null
expect_err "is empty (0 samples)" $T --train-data "$tmp/empty" --out "$tmp/r2"
# unknown divergence
expect_err "kd.divergence: unknown value 'kl' (expected one of: forward_kl|reverse_kl|jsd)" $T --train-data "$tmp/ds" --out "$tmp/r3" --set kd.divergence=kl
# pretrained without a path
expect_err "model.init is pretrained but model.path is empty" $T --train-data "$tmp/ds" --out "$tmp/r4" --set model.init=pretrained
# seq_len beyond the model's positions (tiny: 2048)
expect_err "train.seq_len 4096 exceeds the model's max_position_embeddings 2048" $T --train-data "$tmp/ds" --out "$tmp/r6" --set train.seq_len=4096
# no student tokenizer anywhere
expect_err "no student tokenizer: pass --tokenizer-path" "$KDSTEP" train --train-data "$tmp/ds" --out "$tmp/r5"
# ... and the default models/student/tokenizer (under the working folder), as generate and inspect use
mkdir -p "$tmp/cwd/models/student" && cp -r "$tmp/tok" "$tmp/cwd/models/student/tokenizer"
(cd "$tmp/cwd" && "$KDSTEP" train $(tiny_flags) --train-data "$tmp/ds" --out "$tmp/r7" --set train.seq_len=64 \
   --set train.steps=1 --set train.micro_batch=2 >"$tmp/r7.log" 2>&1) || { cat "$tmp/r7.log"; fail "default tokenizer path"; }
cmp -s "$tmp/tok/tokenizer.json" "$tmp/r7/final/tokenizer.json" || fail "the run did not use models/student/tokenizer"

# a short run: truncation reported, checkpoints, final, curves
$T --train-data "$tmp/ds" --out "$tmp/run" --set train.seq_len=64 --set train.steps=4 --set train.micro_batch=2 \
   --set train.eval_every=2 --set train.checkpoint_every=2 --set train.eval_fraction=0.2 2>"$tmp/run.log" || { cat "$tmp/run.log"; fail "short run"; }
# full context is the default (train.prompt_window 0): samples longer than 64 tokens lose their head
grep -Eq "warning: train: [1-9][0-9]* of 60 samples do not fit train.seq_len=64 with full context: cut" "$tmp/run.log" || { cat "$tmp/run.log"; fail "truncation not reported"; }
grep -Eq "seq_len 64, full context: [0-9]+ samples cut \(prompt head or answer tail\), 0 dropped" "$tmp/run.log" || fail "truncation policy not reported"
# an explicit prompt window is reported as such
$T --train-data "$tmp/ds" --out "$tmp/runw" --set train.seq_len=64 --set train.prompt_window=32 --set train.steps=1 \
   --set train.micro_batch=2 2>"$tmp/runw.log" || { cat "$tmp/runw.log"; fail "windowed run"; }
grep -Eq "warning: train: [1-9][0-9]* of 60 samples do not fit train.seq_len=64 with a prompt window of 32: cut" "$tmp/runw.log" || { cat "$tmp/runw.log"; fail "window truncation not reported"; }
grep -Eq "seq_len 64, prompt window 32: [0-9]+ samples cut \(prompt head or answer tail\), 0 dropped" "$tmp/runw.log" || fail "window policy not reported"
[[ "$(cat "$tmp/run/checkpoints/latest")" == step-000004 ]] || fail "latest"
for f in model.safetensors config.json tokenizer.json trainer_state.json optimizer.bin; do [[ -s "$tmp/run/checkpoints/step-000004/$f" ]] || fail "checkpoints/step-000004/$f"; done
# final/ is a clean model folder: weights, config, generation config, tokenizer; no trainer state
[[ "$(cd "$tmp/run/final" && echo *)" == "config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json" ]] \
  || fail "final/ holds $(cd "$tmp/run/final" && echo *)"
"$PY" - "$tmp/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == [1, 2, 3, 4]
for r in rows:
    for k in ("loss", "kd", "ce", "tool", "json_ce", "json_grammar", "lr", "grad_norm", "tokens_per_s", "mfu", "allreduce_share"):
        assert k in r, (k, r)
    w = 1.0 * r["kd"] + r["ce"] + 0.7 * r["tool"] + 0.3 * (r["json_ce"] + r["json_grammar"])
    assert abs(w - r["loss"]) < 1e-6 * max(1, abs(w)), (w, r["loss"])
assert "heldout_loss" in rows[1] and "heldout_tool_acc" in rows[3] and "heldout_loss" not in rows[0]
PY
# the context LM term (train.context_lm_weight): its value is logged and weighted into the loss; at
# initialization it is near ln(vocab), like CE, since both are next-token CE of a random model
$T --train-data "$tmp/ds" --out "$tmp/ctx" --set train.seq_len=64 --set train.steps=2 --set train.micro_batch=2 \
   --set train.eval_every=0 --set train.context_lm_weight=0.5 2>"$tmp/ctx.log" || { cat "$tmp/ctx.log"; fail "context LM run"; }
"$PY" - "$tmp/ctx/metrics.jsonl" "$tmp/run/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = json.loads(open(sys.argv[2]).readline())
assert "context_lm" not in base, base  # off by default: not logged
for r in rows:
    w = 1.0 * r["kd"] + r["ce"] + 0.7 * r["tool"] + 0.3 * (r["json_ce"] + r["json_grammar"]) + 0.5 * r["context_lm"]
    assert abs(w - r["loss"]) < 1e-6 * max(1, abs(w)), (w, r["loss"])
# the first step's CE terms see the same random weights: context LM within 25% of the answer's CE
assert 0.75 * rows[0]["ce"] < rows[0]["context_lm"] < 1.25 * rows[0]["ce"], rows[0]
PY
head -c 8 "$tmp/run/curves.png" | od -An -c | grep -q "P   N   G" || fail "train did not draw curves.png"
"$KDSTEP" plot "$tmp/run" -o "$tmp/c2.png" >/dev/null
head -c 8 "$tmp/c2.png" | od -An -c | grep -q "P   N   G" || fail "plot did not draw a PNG"
mkdir -p "$tmp/nometrics"
expect_err "cannot read the training metrics" "$KDSTEP" plot "$tmp/nometrics"
# the run folder already holds checkpoints
expect_err "already holds checkpoints; pass --resume" $T --train-data "$tmp/ds" --out "$tmp/run" --set train.seq_len=64

# resuming with another layout continues, with a warning that it is not bit-exact
$T --train-data "$tmp/ds" --out "$tmp/run" --resume --set train.seq_len=64 --set train.steps=6 --set train.micro_batch=3 \
   --set train.eval_every=0 2>"$tmp/re.log" || { cat "$tmp/re.log"; fail "resume with another layout"; }
grep -q "resuming from $tmp/run/checkpoints/step-000004 at step 4" "$tmp/re.log" || { cat "$tmp/re.log"; fail "resume line"; }
grep -q "this run differs, so it continues correctly but not bit-exactly" "$tmp/re.log" || { cat "$tmp/re.log"; fail "layout warning"; }
[[ "$(cat "$tmp/run/checkpoints/latest")" == step-000006 ]] || fail "latest after resume"

# seed fallback: no JSON/tool-name masks in the dataset, spans come from the text
"$MAKEDATA" "$tmp/tok" "$KD_SOURCE_DIR/configs/tools.json" 30 "$tmp/nojs" 8 --no-json-mask >/dev/null
$T --train-data "$tmp/nojs" --out "$tmp/fb" --set train.steps=2 --set train.micro_batch=4 --set train.eval_every=0 2>"$tmp/fb.log" || { cat "$tmp/fb.log"; fail "fallback run"; }
grep -Eq " [1-9][0-9]* without JSON masks use spans extracted from their text" "$tmp/fb.log" || { cat "$tmp/fb.log"; fail "fallback not used"; }
"$PY" -c "
import json,sys
r=[json.loads(l) for l in open('$tmp/fb/metrics.jsonl')]
assert all(x['json_ce'] > 0 and x['tool'] > 0 for x in r), r"

# NaN/Inf: skipped and logged, abort after train.max_bad_steps in a row
expect_err "2 steps in a row had a non-finite loss or gradient (train.max_bad_steps=2)" $T --train-data "$tmp/ds" --out "$tmp/nan" \
  --set train.steps=40 --set train.seq_len=64 --set train.lr=10 --set train.warmup_steps=0 --set train.grad_clip=0 \
  --set train.max_bad_steps=2 --set train.eval_every=0 --set train.micro_batch=2
grep -q "skipped: non-finite" "$tmp/out" || fail "skip not logged"
grep -q '"skipped":true' "$tmp/nan/metrics.jsonl" || fail "skip not in metrics"
echo "train_cli: OK"
