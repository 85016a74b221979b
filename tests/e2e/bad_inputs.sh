#!/usr/bin/env bash
# The bad-input corpus (tests/data/bad/, expectations in tests/data/bad/EXPECT.tsv) plus entries made
# at test time (a 10 MB prompt, a truncated real tokenizer.json, mismatched tokenizer / prompt set /
# registry hashes on resume, truncated HDF5 shards): every entry gets the exit code the design says
# (1, or 0 with the bad lines recorded in failures.jsonl), a message naming the file and the place,
# and never a crash (exit >= 128).
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
bad="$KD_SOURCE_DIR/tests/data/bad"
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
nfail=0 nchecked=0
problem() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }

# run NAME EXPECTED_RC CMD... : run, keep stdout+stderr in $tmp/NAME.out, check the exit code
run() {
  local name=$1 want=$2; shift 2
  local rc=0
  "$@" >"$tmp/$name.out" 2>&1 || rc=$?
  nchecked=$((nchecked + 1))
  if ((rc >= 128)); then problem "$name: crashed (exit $rc): $*"; cat "$tmp/$name.out" >&2; return 1; fi
  if [[ "$want" != any && $rc -ne $want ]]; then
    problem "$name: exit $rc, expected $want: $*"; tail -5 "$tmp/$name.out" >&2; return 1
  fi
  return 0
}
# says NAME FILE REGEX... : the output names the file and matches every regex (the place)
says() {
  local name=$1 file=$2; shift 2
  grep -qF -- "$(basename "$file")" "$tmp/$name.out" || { problem "$name: message does not name $(basename "$file")"; cat "$tmp/$name.out" >&2; return 1; }
  for re in "$@"; do
    grep -qE -- "$re" "$tmp/$name.out" || { problem "$name: message lacks /$re/"; cat "$tmp/$name.out" >&2; return 1; }
  done
}
gen() { "$KDSTEP" generate --tokenizer-path "$tok" --tools "$tools" "$@"; }
# nothing_at NAME PATH: a refused input left nothing behind at PATH
nothing_at() { [[ ! -e "$2" ]] || problem "$1: left $2 behind"; }

# ---- 1. the committed corpus -----------------------------------------------------------------------
while IFS=$'\t' read -r path kind expect place; do
  [[ -z "$path" || "$path" == \#* ]] && continue
  f="$bad/$path" name=$(echo "$path" | tr / _)
  [[ -f "$f" ]] || { problem "$path: missing corpus file"; continue; }
  case "$kind" in
    prompts)
      lines=$(grep -c . "$f" || true)
      if [[ "$expect" == ok ]]; then
        run "$name.check" 0 "$KDSTEP" prompts check "$f" || continue
        run "$name.gen" 0 gen --prompts "$f" --out "$tmp/$name.ds" || continue
        got=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['samples'])" "$tmp/$name.ds/stats.json")
        [[ "$got" == "$lines" ]] || problem "$path: $got samples, expected $lines"
        continue
      fi
      nbad=${expect#skip }
      run "$name.check" 1 "$KDSTEP" prompts check "$f" || continue
      says "$name.check" "$f" "$place"
      got=$(grep -c '"source":"prompts"' "$tmp/$name.check.out" || true)
      [[ "$got" == "$nbad" ]] || problem "$path: prompts check listed $got bad lines, expected $nbad"
      # generate: recorded and skipped, the run goes on and every good line is a sample
      run "$name.gen" 0 gen --prompts "$f" --out "$tmp/$name.ds" || continue
      cp "$tmp/$name.ds/failures.jsonl" "$tmp/$name.failures.out"
      says "$name.failures" "$f" "$place"
      got=$(grep -c '"kind":"prompt"' "$tmp/$name.ds/failures.jsonl" || true)
      [[ "$got" == "$nbad" ]] || problem "$path: failures.jsonl holds $got prompt failures, expected $nbad"
      got=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['samples'])" "$tmp/$name.ds/stats.json")
      [[ "$got" == $((lines - nbad)) ]] || problem "$path: $got samples, expected $((lines - nbad))"
      # --strict makes the first bad line fatal, naming file and line
      run "$name.strict" 1 gen --prompts "$f" --out "$tmp/$name.strict.ds" --strict && says "$name.strict" "$f"
      ;;
    config)
      run "$name" 1 "$KDSTEP" config --config "$f" && says "$name" "$f" "$place"
      ;;
    registry)
      run "$name" 1 "$KDSTEP" tools --tools "$f" && says "$name" "$f" "$place"
      run "$name.gen" 1 "$KDSTEP" generate --prompts "$bad/prompts/bom_file_start.jsonl" --out "$tmp/$name.ds" \
        --tokenizer-path "$tok" --tools "$f" && says "$name.gen" "$f" "$place"
      ;;
    tokenizer)
      run "$name" 1 "$KDSTEP" tokenize --tokenizer "$f" </dev/null && says "$name" "$f" "$place"
      run "$name.gen" 1 "$KDSTEP" generate --prompts "$bad/prompts/bom_file_start.jsonl" --out "$tmp/$name.ds" \
        --tokenizer-path "$f" --tools "$tools" && says "$name.gen" "$f" "$place"
      ;;
    job)
      # run from an empty folder: an empty job file must not start the default demo there
      mkdir -p "$tmp/$name.cwd"
      pushd "$tmp/$name.cwd" >/dev/null
      run "$name" 1 "$KDSTEP" run "$f" --stage generate && says "$name" "$f" "$place"
      popd >/dev/null
      [[ -z "$(ls -A "$tmp/$name.cwd")" ]] || problem "$path: left $(ls -A "$tmp/$name.cwd" | head -3 | tr '\n' ' ')behind"
      ;;
    *) problem "$path: unknown kind '$kind'" ;;
  esac
done <"$bad/EXPECT.tsv"

# ---- 2. made at test time ----------------------------------------------------------------------------
# A 10 MB prompt: a valid line, so `prompts check` accepts it; generate records it as too long (line 2)
# and goes on with the others.
/usr/bin/python3 - "$tmp/huge.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"id": "ok-1", "prompt": "What is the weather in Paris?"}) + "\n")
    f.write(json.dumps({"id": "huge-2", "prompt": "word " * (2 * 1024 * 1024)}) + "\n")
    f.write(json.dumps({"id": "ok-3", "prompt": "Search the web for llamas"}) + "\n")
EOF
run huge.check 0 "$KDSTEP" prompts check "$tmp/huge.jsonl"
if run huge.gen 0 gen --prompts "$tmp/huge.jsonl" --out "$tmp/huge.ds"; then
  cp "$tmp/huge.ds/failures.jsonl" "$tmp/huge.failures.out"
  grep -qE '"line":2,"id":"huge-2","kind":"too_long","reason":"(at least )?[0-9]* tokens .*is more than generate.max_seq_len' "$tmp/huge.failures.out" ||
    problem "10 MB prompt: not recorded as too_long at line 2: $(cut -c1-300 "$tmp/huge.failures.out")"
fi

# A real tokenizer.json cut in half.
head -c $(($(stat -c %s "$tok/tokenizer.json") / 2)) "$tok/tokenizer.json" >"$tmp/half-tokenizer.json"
run tok_half 1 "$KDSTEP" tokenize --tokenizer "$tmp/half-tokenizer.json" </dev/null &&
  says tok_half "$tmp/half-tokenizer.json" "malformed JSON at line [0-9]+ column [0-9]+"

# Resume refusals: a folder made with one tokenizer / prompt set / registry refuses another, naming
# the folder and what differs; --force starts over.
"$KDSTEP" prompts synth --tools "$tools" -n 6 --seed 3 -o "$tmp/p6.jsonl" >/dev/null
"$KDSTEP" prompts synth --tools "$tools" -n 6 --seed 4 -o "$tmp/p6b.jsonl" >/dev/null
run base 0 gen --prompts "$tmp/p6.jsonl" --out "$tmp/ds"
mkdir -p "$tmp/tok2"
/usr/bin/python3 - "$tok/tokenizer.json" "$tmp/tok2/tokenizer.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
top = max([t["id"] for t in d["added_tokens"]] + list(d["model"]["vocab"].values()))
d["added_tokens"].append({"id": top + 1, "content": "<|extra|>",
                          "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True})
json.dump(d, open(sys.argv[2], "w"))
EOF
run resume_tok 1 "$KDSTEP" generate --prompts "$tmp/p6.jsonl" --out "$tmp/ds" --tokenizer-path "$tmp/tok2" --tools "$tools" &&
  says resume_tok "$tmp/ds" "cannot resume into .*ds: .*tokenizer sha256" "--force"
run resume_prompts 1 gen --prompts "$tmp/p6b.jsonl" --out "$tmp/ds" &&
  says resume_prompts "$tmp/ds" "another prompt set" "p6b.jsonl"
/usr/bin/python3 -c "import json,sys; t=json.load(open(sys.argv[1])); json.dump(t[:-1], open(sys.argv[2],'w'))" "$tools" "$tmp/tools-less.json"
run resume_registry 1 "$KDSTEP" generate --prompts "$tmp/p6.jsonl" --out "$tmp/ds" --tokenizer-path "$tok" --tools "$tmp/tools-less.json" &&
  says resume_registry "$tmp/ds" "registry sha256"
run resume_slice 1 gen --prompts "$tmp/p6.jsonl" --out "$tmp/ds" --slice 0/2 && says resume_slice "$tmp/ds" "--slice 0/1"
run resume_same 0 gen --prompts "$tmp/p6.jsonl" --out "$tmp/ds"
run force 0 gen --prompts "$tmp/p6b.jsonl" --out "$tmp/ds" --force

# Truncated HDF5: a shard cut short is moved aside (named in the warning) and its prompts generated
# again, so the rerun ends with the same dataset as an uninterrupted run.
run trunc_base 0 gen --prompts "$tmp/p6.jsonl" --out "$tmp/dt"
cp -r "$tmp/dt" "$tmp/dt-ref"
truncate -s $(($(stat -c %s "$tmp/dt/shard-00000.h5") / 2)) "$tmp/dt/shard-00000.h5"
if run trunc_shard 0 gen --prompts "$tmp/p6.jsonl" --out "$tmp/dt"; then
  says trunc_shard "$tmp/dt/shard-00000.h5" "moving it to .*shard-00000.h5.corrupt"
  /usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/dt" "$tmp/dt-ref" || problem "truncated shard: rerun differs from the original"
  n=$(/usr/bin/python3 -c "import h5py,sys; print(len(h5py.File(sys.argv[1])['samples/prompt_id']))" "$tmp/dt/dataset.h5")
  n0=$(/usr/bin/python3 -c "import h5py,sys; print(len(h5py.File(sys.argv[1])['samples/prompt_id']))" "$tmp/dt-ref/dataset.h5")
  [[ "$n" == "$n0" ]] || problem "truncated shard: $n samples after the rerun, $n0 before"
fi
# A finished slice whose shard is truncated: the merge refuses (its prompts would otherwise be
# silently missing from the merged dataset), naming the slice and what to do.
mkdir -p "$tmp/slice"
cp "$tmp/dt-ref/meta.json" "$tmp/dt-ref/shard-00000.journal" "$tmp/slice/"
head -c 3000 "$tmp/dt-ref/shard-00000.h5" >"$tmp/slice/shard-00000.h5"
run trunc_merge 1 "$KDSTEP" generate --merge --out "$tmp/merged" "$tmp/slice" &&
  says trunc_merge "$tmp/slice/shard-00000.h5" "cannot be opened as HDF5" "merge: slice .*slice: 6 of its 6 sealed samples are in damaged shards" "rerun generate"
# A folder that generate did not make is not written into; --force is the way to reuse it.
mkdir -p "$tmp/notours"; echo keep >"$tmp/notours/notes.txt"
run not_ours 1 gen --prompts "$tmp/p6.jsonl" --out "$tmp/notours" && says not_ours "$tmp/notours" "holds notes.txt" "--force"
[[ -f "$tmp/notours/notes.txt" ]] || problem "not_ours: the folder was touched"

# Training and evaluation inputs: a dataset tokenized with another tokenizer, a truncated dataset.h5,
# a checkpoint whose model.safetensors is cut short.
TRAIN=("$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" --set model.preset=tiny
       --set train.seq_len=128 --set train.steps=2 --set train.micro_batch=2 --set train.warmup_steps=1)
if "$KDSTEP" train --help >/dev/null 2>&1; then
  run train_tok 1 "${TRAIN[@]}" --train-data "$tmp/dt-ref" --tokenizer-path "$tmp/tok2" --out "$tmp/tr-tok" &&
    says train_tok "$tmp/dt-ref" "different tokenizer"
  [[ ! -e "$tmp/tr-tok/metrics.jsonl" ]] || problem "train_tok: a step ran despite the tokenizer mismatch"
  cp -r "$tmp/dt-ref" "$tmp/dt-cut"
  head -c 4000 "$tmp/dt-ref/dataset.h5" >"$tmp/dt-cut/dataset.h5"
  run train_h5cut 1 "${TRAIN[@]}" --train-data "$tmp/dt-cut" --tokenizer-path "$tok" --out "$tmp/tr-cut" &&
    says train_h5cut "$tmp/dt-cut/dataset.h5" "dt-cut/dataset.h5: cannot be opened as HDF5"
  if run train_ok 0 "${TRAIN[@]}" --train-data "$tmp/dt-ref" --tokenizer-path "$tok" --out "$tmp/tr"; then
    cp -r "$tmp/tr/final" "$tmp/ck"
    head -c 5000 "$tmp/tr/final/model.safetensors" >"$tmp/ck/model.safetensors"
    run eval_stcut 1 "$KDSTEP" eval --model "$tmp/ck" --prompts "$tmp/p6.jsonl" --out "$tmp/ev" &&
      says eval_stcut "$tmp/ck/model.safetensors" "data_offsets \[[0-9]+, [0-9]+\] run past the [0-9]+ data bytes \(truncated file\?\)"
    head -c 100 "$tmp/tr/final/model.safetensors" >"$tmp/ck/model.safetensors"
    run eval_sthdr 1 "$KDSTEP" eval --model "$tmp/ck" --prompts "$tmp/p6.jsonl" --out "$tmp/ev2" &&
      says eval_sthdr "$tmp/ck/model.safetensors" "safetensors"
    # issue 21: NaN weights (they decoded to empty text), an unsupported hidden_act (it was ignored)
    cp -r "$tmp/tr/final/." "$tmp/ck/"
    /usr/bin/python3 - "$tmp/ck/model.safetensors" <<'EOF2'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
name = sorted(k for k in h if k != "__metadata__")[0]
at = 8 + n + h[name]["data_offsets"][0] + 4 * 3
b[at:at + 4] = struct.pack("<f", float("nan"))
open(sys.argv[1], "wb").write(bytes(b))
print(name)
EOF2
    run eval_nan 1 "$KDSTEP" eval --model "$tmp/ck" --prompts "$tmp/p6.jsonl" --out "$tmp/ev-nan" &&
      says eval_nan "$tmp/ck/model.safetensors" "tensor '[a-z_.0-9]+' holds NaN at element 3"
    nothing_at eval_nan "$tmp/ev-nan/predictions.jsonl"
    cp -r "$tmp/tr/final/." "$tmp/ck/"
    /usr/bin/python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['hidden_act']='gelu'; json.dump(c, open(sys.argv[1],'w'))" "$tmp/ck/config.json"
    run eval_gelu 1 "$KDSTEP" eval --model "$tmp/ck" --prompts "$tmp/p6.jsonl" --out "$tmp/ev-gelu" &&
      says eval_gelu "$tmp/ck/config.json" 'hidden_act is "gelu"; only "silu"'
    nothing_at eval_gelu "$tmp/ev-gelu/predictions.jsonl"
    # trainer_state.json edited to step 999: refused against its folder and the metrics
    cp -r "$tmp/tr" "$tmp/tr-edit"
    st=$(ls -d "$tmp/tr-edit/checkpoints/step-"* | tail -1)
    /usr/bin/python3 -c "import json,sys; s=json.load(open(sys.argv[1])); s['step']=999; json.dump(s, open(sys.argv[1],'w'))" "$st/trainer_state.json"
    cp "$tmp/tr-edit/metrics.jsonl" "$tmp/metrics-before"
    run state_999 1 "${TRAIN[@]}" --set train.steps=4 --train-data "$tmp/dt-ref" --tokenizer-path "$tok" --out "$tmp/tr-edit" --resume &&
      says state_999 "$st/trainer_state.json" "step 999, but it sits in checkpoint folder step-0*2"
    cmp -s "$tmp/metrics-before" "$tmp/tr-edit/metrics.jsonl" || problem "state_999: metrics.jsonl was changed"
    # a torn last metrics line: reported on resume, not lost silently
    cp -r "$tmp/tr" "$tmp/tr-torn"
    truncate -s -10 "$tmp/tr-torn/metrics.jsonl"
    run metrics_torn 0 "${TRAIN[@]}" --set train.steps=3 --train-data "$tmp/dt-ref" --tokenizer-path "$tok" --out "$tmp/tr-torn" --resume &&
      says metrics_torn "$tmp/tr-torn/metrics.jsonl" "metrics.jsonl:2: the last line is cut short .*that step's metrics are lost"
  fi
else
  echo "bad inputs: no trainer in this build; training/eval entries skipped"
fi

# ---- 3. issue 21's smaller items: a clear error, rc != 0, nothing left behind ----------------------------
# A tokenizer.json with an empty vocabulary (generate once wrote ~20 tokens per sample with it)
mkdir -p "$tmp/tok-empty"
/usr/bin/python3 - "$tok/tokenizer.json" "$tmp/tok-empty/tokenizer.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1])); d["model"]["vocab"] = {}; d["model"]["merges"] = []
json.dump(d, open(sys.argv[2], "w"))
EOF2
run tok_empty 1 "$KDSTEP" tokenize --tokenizer "$tmp/tok-empty/tokenizer.json" </dev/null &&
  says tok_empty "$tmp/tok-empty/tokenizer.json" "tokenizer.json:[0-9]+:[0-9]+: model.vocab is empty"
run tok_empty_gen 1 gen --prompts "$tmp/p6.jsonl" --out "$tmp/tok-empty.ds" --tokenizer-path "$tmp/tok-empty" &&
  says tok_empty_gen "$tmp/tok-empty/tokenizer.json" "model.vocab is empty"
nothing_at tok_empty_gen "$tmp/tok-empty.ds"
# An invalid byte inside <|im_end|>: the special token was lost without a word
mkdir -p "$tmp/tok-byte"
/usr/bin/python3 - "$tok/tokenizer.json" "$tmp/tok-byte/tokenizer.json" <<'EOF2'
import sys
b = open(sys.argv[1], "rb").read()
assert b.count(b'"<|im_end|>"') >= 1
open(sys.argv[2], "wb").write(b.replace(b'"<|im_end|>"', b'"<|im_\xffend|>"'))
EOF2
run tok_byte 1 "$KDSTEP" tokenize --tokenizer "$tmp/tok-byte/tokenizer.json" </dev/null &&
  says tok_byte "$tmp/tok-byte/tokenizer.json" "malformed JSON at line [0-9]+ column [0-9]+.*invalid UTF-8 in string"
# A tool registry whose schemas use keywords kdstep does not check: accepted, with one warning listing them
/usr/bin/python3 - "$tmp/tools-kw.json" <<'EOF2'
import json, sys
tools = [{"type": "function", "function": {"name": "t%d" % i, "description": "d",
          "parameters": {"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {"type": "string", "pattern": "^x"},
                                                         "c": {"type": "banana"}}}}} for i in range(3)]
json.dump(tools, open(sys.argv[1], "w"))
EOF2
if run tools_kw 0 "$KDSTEP" tools --tools "$tmp/tools-kw.json"; then
  says tools_kw "$tmp/tools-kw.json" "JSON Schema keywords \\\$ref, pattern; types banana, which kdstep does not check"
  [[ $(grep -c "does not check" "$tmp/tools_kw.out") == 1 ]] || problem "tools_kw: the warning is not given exactly once"
fi
# prompts synth: -n without bound; a killed synth leaves no .tmp
run synth_huge 2 "$KDSTEP" prompts synth --tools "$tools" -n 99999999999999 -o "$tmp/huge-synth.jsonl" &&
  says synth_huge "prompts" "-n 99999999999999 is more than the limit of 100000000 prompts"
nothing_at synth_huge "$tmp/huge-synth.jsonl"
mkdir -p "$tmp/synth-kill"
"$KDSTEP" prompts synth --tools "$tools" -n 50000000 -o "$tmp/synth-kill/p.jsonl" >/dev/null 2>&1 &
spid=$!
for _ in $(seq 100); do compgen -G "$tmp/synth-kill/p.jsonl.tmp.*" >/dev/null && break; sleep 0.05; done
kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
[[ -z "$(ls -A "$tmp/synth-kill")" ]] || problem "synth killed by SIGTERM left $(ls "$tmp/synth-kill" | tr '\n' ' ')"
nchecked=$((nchecked + 1))

echo "bad inputs: $nchecked commands checked, $nfail problems"
((nfail == 0))
