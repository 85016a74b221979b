#!/usr/bin/env bash
# kdstep eval end to end on a student checkpoint (BPE tokenizer trained here, random Qwen3 weights
# written by tests/e2e/make_student.py with numpy): the report equals re-scoring predictions.jsonl
# with `kdstep score`; -np 1 and -np 2 give byte-identical predictions and reports (greedy and
# seeded sampling); a student trained by `kdstep train` (tiny preset, stub-teacher dataset) evaluates
# at -np 2 and its report equals re-scoring too; CLI errors and exit codes.
set -u
K="${KDSTEP:?}"; S="${KD_SOURCE_DIR:?}"
command -v mpirun >/dev/null || { echo "mpirun missing"; exit 77; }
command -v jq >/dev/null || { echo "jq missing"; exit 77; }
export KDSTEP_PROGRESS_INTERVAL=1000
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mpi() { local n=$1; shift; mpirun --allow-run-as-root --oversubscribe -np "$n" "$@"; }

# four tools keep prompts short for the tiny preset; 30 prompts, ~10% of them expect no call
jq '.[0:4]' "$S/configs/tools.json" >"$tmp/tools.json"
"$K" tokenizer corpus --tools "$tmp/tools.json" --mb 1 -o "$tmp/corpus.txt" >/dev/null 2>&1
"$K" tokenizer train --vocab-size 800 --quiet -o "$tmp/tok" "$tmp/corpus.txt" >/dev/null 2>&1
/usr/bin/python3 "$S/tests/e2e/make_student.py" "$S/configs/models/tiny.json" "$tmp/tok/tokenizer.json" "$tmp/ckpt" --seed 3 \
  || { echo "FAIL make_student.py"; exit 1; }
"$K" prompts synth --tools "$tmp/tools.json" -n 30 --seed 5 -o "$tmp/held.jsonl" >/dev/null 2>&1

run_eval() { # NP OUT [extra flags]
  local np=$1 out=$2; shift 2
  mpi "$np" "$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --tools "$tmp/tools.json" --max-new-tokens 40 \
    --out "$tmp/$out" "$@" >"$tmp/$out.stdout" 2>"$tmp/$out.stderr"
}
run_eval 1 np1; rc1=$?
run_eval 2 np2; rc2=$?
check "eval -np 1 exits 0" '[ $rc1 -eq 0 ] || { cat "$tmp/np1.stderr"; false; }'
check "eval -np 2 exits 0" '[ $rc2 -eq 0 ] || { cat "$tmp/np2.stderr"; false; }'
check "outputs written" '[ -s "$tmp/np1/predictions.jsonl" ] && [ -s "$tmp/np1/report.json" ] && [ -s "$tmp/np1/report.md" ] && [ -s "$tmp/np1/eval.json" ]'
check "30 predictions in prompt order" '[ "$(jq -r .id "$tmp/np1/predictions.jsonl" | paste -sd,)" = "$(jq -r .id "$tmp/held.jsonl" | paste -sd,)" ]'
check "predictions are raw text records" 'jq -e "has(\"id\") and (.text|type==\"string\")" "$tmp/np1/predictions.jsonl" >/dev/null'
check "np1 and np2 predictions identical" 'cmp -s "$tmp/np1/predictions.jsonl" "$tmp/np2/predictions.jsonl"'
check "np1 and np2 reports identical" 'cmp -s "$tmp/np1/report.json" "$tmp/np2/report.json"'
check "stdout is report.json" 'jq -e --slurpfile r "$tmp/np1/report.json" ". == \$r[0]" "$tmp/np1.stdout" >/dev/null'
check "eval.json says 2 ranks" '[ "$(jq .ranks "$tmp/np2/eval.json")" = 2 ] && [ "$(jq .count "$tmp/np2/eval.json")" = 30 ]'
check "tokens were generated" '[ "$(jq .generated_tokens "$tmp/np1/eval.json")" -ge 30 ]'

"$K" score --predictions "$tmp/np1/predictions.jsonl" --answers "$tmp/held.jsonl" --tools "$tmp/tools.json" >"$tmp/rescore.json" 2>"$tmp/rescore.err"; rc=$?
check "score re-run exits 0" '[ $rc -eq 0 ]'
check "report equals re-scoring predictions.jsonl" 'jq -e --slurpfile r "$tmp/np1/report.json" ". == \$r[0]" "$tmp/rescore.json" >/dev/null'
check "report has every metric" 'jq -e "[\"tool_name_accuracy\",\"json_validity\",\"schema_validity\",\"ast_accuracy\",\"no_call_accuracy\",\"count\",\"by_category\"]|all(. as \$k|\$r[0]|has(\$k))" --slurpfile r "$tmp/np1/report.json" -n >/dev/null'
check "count 30" '[ "$(jq .count "$tmp/np1/report.json")" = 30 ]'

# seeded sampling does not depend on the split either
run_eval 1 t1 --temperature 0.9 --set eval.seed=4; r1=$?
run_eval 2 t2 --temperature 0.9 --set eval.seed=4; r2=$?
check "sampling np1 == np2" '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && cmp -s "$tmp/t1/predictions.jsonl" "$tmp/t2/predictions.jsonl"'
check "sampling differs from greedy" '! cmp -s "$tmp/t1/predictions.jsonl" "$tmp/np1/predictions.jsonl"'

# a trained student: stub-teacher dataset over the same tools, a few `kdstep train` steps of the tiny
# preset, then eval of its final checkpoint (the folder the trainer writes) at -np 2
"$K" prompts synth --tools "$tmp/tools.json" -n 40 --seed 6 -o "$tmp/train.jsonl" >/dev/null 2>&1
"$K" generate --prompts "$tmp/train.jsonl" --out "$tmp/ds" --tools "$tmp/tools.json" --tokenizer-path "$tmp/tok" >/dev/null 2>"$tmp/gen.err"
rc=$?
check "generate for the trained student" '[ $rc -eq 0 ] || { cat "$tmp/gen.err"; false; }'
KDSTEP_THREADS=1 "$K" train --train-data "$tmp/ds" --out "$tmp/run" --tokenizer-path "$tmp/tok" --set model.preset=tiny \
  --set train.seq_len=1024 --set train.micro_batch=2 --set train.steps=6 --set train.warmup_steps=1 --set train.eval_every=0 \
  >/dev/null 2>"$tmp/train.err"; rc=$?
check "train a tiny student" '[ $rc -eq 0 ] && [ -s "$tmp/run/final/tokenizer.json" ] || { cat "$tmp/train.err"; false; }'
mpi 2 "$K" eval --model "$tmp/run/final" --prompts "$tmp/held.jsonl" --tools "$tmp/tools.json" --max-new-tokens 24 \
  --out "$tmp/trained" >"$tmp/trained.stdout" 2>"$tmp/trained.stderr"; rc=$?
check "eval of the trained checkpoint exits 0" '[ $rc -eq 0 ] || { cat "$tmp/trained.stderr"; false; }'
# final/ holds only the Hugging Face files: the length the run trained at comes from its latest
# checkpoint (1024, not train.seq_len's default 256), so no prompt is cut
check "final/: the trained seq_len from the run's latest checkpoint" \
  'grep -q "the student trained at seq_len 1024 (.*/checkpoints/step-000006/trainer_state.json, its run.s latest checkpoint)" "$tmp/trained.stderr"'
check "  no prompt cut" '! grep -q "were cut" "$tmp/trained.stderr"'
"$K" score --predictions "$tmp/trained/predictions.jsonl" --answers "$tmp/held.jsonl" --tools "$tmp/tools.json" >"$tmp/trained.rescore" 2>/dev/null
check "trained: report equals re-scoring predictions.jsonl" 'jq -e --slurpfile r "$tmp/trained/report.json" ". == \$r[0]" "$tmp/trained.rescore" >/dev/null'

# CLI errors
"$K" eval --help >"$tmp/help" 2>&1; rc=$?
check "--help exits 0 with usage" '[ $rc -eq 0 ] && grep -q "^usage: kdstep eval" "$tmp/help"'
"$K" eval --prompts "$tmp/held.jsonl" >/dev/null 2>"$tmp/e1"; rc=$?
check "missing --model exits 2" '[ $rc -eq 2 ] && grep -q -- "--model and --prompts are required" "$tmp/e1"'
"$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --bogus >/dev/null 2>"$tmp/e2"; rc=$?
check "unknown flag exits 2" '[ $rc -eq 2 ] && grep -q "unknown or incomplete flag" "$tmp/e2"'
"$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --max-new-tokens 0 --out "$tmp/x" >/dev/null 2>"$tmp/e3"; rc=$?
check "--max-new-tokens 0 is a config range error" '[ $rc -eq 1 ] && grep -q "max_new_tokens" "$tmp/e3"'
"$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --max-prompts x >/dev/null 2>"$tmp/e4"; rc=$?
check "--max-prompts x exits 2" '[ $rc -eq 2 ] && grep -q "max-prompts wants a positive integer" "$tmp/e4"'
mkdir -p "$tmp/half"; cp "$tmp/ckpt/config.json" "$tmp/ckpt/model.safetensors" "$tmp/half/"
mpi 2 "$K" eval --model "$tmp/half" --prompts "$tmp/held.jsonl" --out "$tmp/y" >/dev/null 2>"$tmp/e5"; rc=$?
check "missing tokenizer.json fails on every rank, exit 1, one message" \
  '[ $rc -ne 0 ] && [ "$(grep -c "has no tokenizer.json" "$tmp/e5")" = 1 ]'
exit $fail
