#!/usr/bin/env bash
# The docs' walk from a tokenizer to an evaluated student (group data of tests/lib/doc_commands.txt),
# run exactly as written in a sandbox repository (tests/lib/docs_run.bash): the tokenizer commands of
# docs/tokenizer-training.md, docs/guide.md's `mpirun -np 2 kdstep run jobs/demo.yaml` (jobs/demo.yaml
# with its size keys made small) and inspect, docs/dataset-format.md's export and h5py program,
# docs/training.md's train and plot, and docs/eval.md's two eval lines (checked to give the same output).
source "$KD_SOURCE_DIR/tests/lib/docs_run.bash"
command -v mpirun >/dev/null || { echo "skip: no mpirun"; exit 77; }
docs_sandbox
docs_shrunk_demo
# the knobs appended to the training and eval lines: the tiny student, a few steps, a few prompts
TRAIN_KNOBS=(--set model.preset=tiny --set train.seq_len=256 --set train.prompt_window=128 --set train.steps=4
             --set train.micro_batch=4 --set train.eval_every=2 --set train.checkpoint_every=2)
EVAL_KNOBS=(--max-prompts 6 --max-new-tokens 12)

kd_before() { # N FILE COMMAND
  CUR=$3
  case "$CUR" in
    python:*) MORE=(runs/demo/dataset 0) ;;
    "mpirun -np 2 kdstep train "*) MORE=("${TRAIN_KNOBS[@]}") ;;
    *"kdstep eval "*)
      [[ -s heldout.jsonl ]] || cp runs/demo/heldout.jsonl heldout.jsonl || fail "no held-out prompts in runs/demo"
      MORE=("${EVAL_KNOBS[@]}") ;;
  esac
}

kd_after() { # N
  local n=$1
  case "$CUR" in
    "kdstep tokenizer corpus "*)
      (( $(stat -c %s corpus.txt) > 19000000 )) || fail "tokenizer corpus --mb 20 wrote $(stat -c %s corpus.txt) bytes" ;;
    "kdstep tokenizer train "*)
      grep -q "8192 ids" "$KD_LOG/$n.err" || { err "$n"; fail "tokenizer train did not reach 8192 ids"; }
      [[ -s models/student/tokenizer/tokenizer.json ]] || fail "no models/student/tokenizer/tokenizer.json" ;;
    "jobs/make-student-tokenizer.sh")
      grep -q "tokenizer.json exists (--force to retrain)" "$KD_LOG/$n.out" || { out "$n"; fail "make-student-tokenizer.sh retrained an existing tokenizer"; } ;;
    "mpirun -np 2 kdstep run "*)
      for f in dataset/dataset.h5 train/final/model.safetensors train/curves.png eval/report.json eval/report.md; do
        [[ -s runs/demo/$f ]] || { tail -20 "$KD_LOG/$n.err"; fail "kdstep run jobs/demo.yaml left no runs/demo/$f"; }
      done
      # the eval splits side by side: (a) train tools, (b) held-out tools, (c) BFCL when ../shared is here
      # (only when the demo job asks for them: jobs/unseen.yaml's regime)
      if grep -q '^ *heldout_tools:' jobs/demo.yaml; then
      grep -q '^| a_train_tools | 6 |' runs/demo/eval/splits.md && grep -q '^| b_heldout_tools | 6 |' runs/demo/eval/splits.md ||
        { cat runs/demo/eval/splits.md; fail "eval/splits.md lacks split (a) or (b)"; }
      if [[ -d ../shared/data/bfcl ]]; then
        grep -q '^| c_bfcl_irrelevance | 2 |' runs/demo/eval/splits.md || { cat runs/demo/eval/splits.md; fail "eval/splits.md lacks BFCL"; }
      fi
      jq -e '.splits.b_heldout_tools.count == 6' runs/demo/eval/report.json >/dev/null || fail "report.json has no splits"
      fi ;;
    "kdstep inspect "*)
      grep -qE '^samples +48 \(written by the teacher 48, by the student 0\)$' "$KD_LOG/$n.out" || { out "$n"; fail "inspect: not the 48 samples of the shrunk demo"; }
      grep -qE '^sample +prompt id [0-9]+' "$KD_LOG/$n.out" && grep -q '^--- response' "$KD_LOG/$n.out" \
        || { out "$n"; fail "inspect --sample 0 did not show the sample"; } ;;
    "kdstep export "*)
      [[ $(wc -l <dataset.jsonl) -eq 48 ]] || fail "export wrote $(wc -l <dataset.jsonl) lines for 48 samples" ;;
    python:*)
      # the h5py program's sample 0 is the export's first line (both in dataset order)
      "$PY" - "$KD_LOG/$n.out" dataset.jsonl <<'PY' || { out "$n"; fail "the h5py program's output"; }
import json, sys
got = json.loads(open(sys.argv[1]).read())
first = json.loads(open(sys.argv[2]).readline())
assert got["prompt"] == first["prompt"] and got["prompt_id"] == first["prompt_id"], (got["prompt_id"], first["prompt_id"])
assert got["metadata"] == first["metadata"], (got["metadata"], first["metadata"])
assert got["tokens"] > got["response_tokens"] > 0 and got["topk_shape"] == [got["tokens"], 8], got
PY
      ;;
    "mpirun -np 2 kdstep train "*)
      [[ -s runs/train/final/model.safetensors ]] || fail "train wrote no runs/train/final"
      [[ $(wc -l <runs/train/metrics.jsonl) -eq 4 ]] || fail "train: $(wc -l <runs/train/metrics.jsonl) metric lines for 4 steps" ;;
    "kdstep plot "*)
      head -c 8 curves.png | od -An -c | grep -q "P   N   G" || fail "plot -o curves.png is not a PNG" ;;
    "kdstep eval "*)
      jq -e '.count == 6' runs/eval/report.json >/dev/null || { cat runs/eval/report.json; fail "eval: not 6 prompts scored"; }
      mkdir -p "$KD_LOG/eval1" && cp runs/eval/report.json runs/eval/predictions.jsonl "$KD_LOG/eval1/" ;;
    "mpirun -np 4 kdstep eval "*)
      # the doc says: same output
      cmp runs/eval/predictions.jsonl "$KD_LOG/eval1/predictions.jsonl" || fail "eval on 4 ranks: other predictions than on 1"
      cmp runs/eval/report.json "$KD_LOG/eval1/report.json" || fail "eval on 4 ranks: another report than on 1" ;;
  esac
}

docs_run data
