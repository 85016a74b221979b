#!/usr/bin/env bash
# kdstep export round-trips against h5py (the ids of each field equal the HDF5 ids under its mask;
# a field is absent exactly when its mask is empty), and kdstep inspect's summary and sample view.
set -u
K="${KDSTEP:?}"; B="${KD_BUILD_DIR:?}"; S="${KD_SOURCE_DIR:?}"
PY=/usr/bin/python3
$PY -c "import h5py" 2>/dev/null || { echo "skip: /usr/bin/python3 has no h5py"; exit 77; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$B/tests/bench_h5data" write "$T/ds" 2 120 9 >/dev/null || { echo "FAIL driver"; exit 1; }

"$K" export "$T/ds" --format jsonl -o "$T/out.jsonl" 2>/dev/null; rc=$?
check "export exits 0" '[ $rc -eq 0 ]'
$PY - "$T/ds" "$T/out.jsonl" <<'PYEOF'; rc=$?
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1] + "/dataset.h5", "r")
recs = [json.loads(l) for l in open(sys.argv[2])]
N = f["samples/prompt_id"].shape[0]
assert len(recs) == N, (len(recs), N)
off = f["samples/offsets"][:]; ids = f["tokens/input_ids"][:]
pairs = {"tool_name_mask": ("tool_name_ids", "tool_name_mask"),
         "json_mask": ("gold_json_text_ids", "mask_valid_json_tokens"),
         "integration_mask": ("tool_result_fields", "integration_mask")}
masks = {m: f["tokens/" + m][:].astype(bool) for m in pairs}
def text(name, i):
    o = f["text/" + name + "_offsets"]
    return f["text/" + name][o[i]:o[i + 1]].tobytes().decode("utf-8")
absent = 0
for i, r in enumerate(recs):
    a, b = off[i], off[i + 1]
    assert r["prompt_id"] == int(f["samples/prompt_id"][i]) and r["id"] == text("prompt_key", i)
    assert r["prompt"] == text("prompt", i) and r["teacher_text"] == text("teacher_text", i)
    assert r["metadata"] == json.loads(text("metadata", i))
    for m, (ids_key, mask_key) in pairs.items():
        want = ids[a:b][masks[m][a:b]].tolist()
        if want:
            assert r[ids_key] == want, (i, m, r[ids_key], want)
            assert r[mask_key] == [1] * len(want)
        else:
            assert ids_key not in r and mask_key not in r, (i, m)
            absent += 1
assert absent > 0, "some sample should lack a span (h5gen drops integration for id % 4 == 0)"
print("ok   export: %d records, ids equal HDF5 ids under each mask, %d empty spans absent" % (N, absent))
PYEOF
check "export round-trips against h5py" '[ $rc -eq 0 ]'

out=$("$K" inspect "$T/ds"); rc=$?
check "inspect exits 0" '[ $rc -eq 0 ]'
want=$($PY -c "
import h5py,sys
f=h5py.File('$T/ds/dataset.h5','r'); o=f['samples/offsets'][:]
print(f['samples/prompt_id'].shape[0], int(o[-1]), int(f['tokens/loss_mask'][:].sum()), int(f['tokens/tool_name_mask'][:].sum()), int(f['tokens/json_mask'][:].sum()))")
read n tokens resp tool json <<<"$want"
check "summary samples" 'grep -q "^samples   $n (written by the teacher $n, by the student 0)\$" <<<"$out"'
check "summary tokens" 'grep -q "^tokens    $tokens (" <<<"$out" && grep -q ", $resp of those in loss_mask" <<<"$out"'
check "summary tool-name coverage" 'grep -Eq "^  tool name +$tool " <<<"$out"'
check "summary JSON coverage" 'grep -Eq "^  JSON +$json " <<<"$out"'

out=$("$K" inspect "$T/ds" --sample 3 --color never); rc=$?
check "inspect --sample exits 0" '[ $rc -eq 0 ]'
check "sample shown with brackets" 'grep -q "\[\[tool:[0-9]*\]\] \[\[json:[0-9]* [0-9]*\]\]" <<<"$out"'
check "no colour codes when not a terminal" '! grep -q $'"'"'\033'"'"' <<<"$out"'
out=$("$K" inspect "$T/ds" --sample 3 --color always)
check "--color always highlights" 'grep -q $'"'"'\033\[1;33m'"'"' <<<"$out"'
if [ -f "$S/tests/.cache/tokenizers/qwen3/tokenizer.json" ]; then
  out=$("$K" inspect "$T/ds" --sample 3 --color never --tokenizer-path "$S/tests/.cache/tokenizers/qwen3" 2>"$T/err"); rc=$?
  check "decoded with a tokenizer" '[ $rc -eq 0 ] && ! grep -q "no tokenizer" <<<"$out" && grep -q "\[\[tool:" <<<"$out"'
  check "tokenizer mismatch warned" 'grep -q "is not the tokenizer this dataset was made with" "$T/err"'
fi

err=$("$K" inspect "$T/nope" 2>&1); rc=$?
check "missing dataset exits 1" '[ $rc -eq 1 ] && grep -q "no such dataset file" <<<"$err"'
err=$("$K" inspect "$T/ds" --sample 999 2>&1); rc=$?
check "sample out of range exits 1" '[ $rc -eq 1 ] && grep -q "inspect: --sample 999, but .* holds 120 samples" <<<"$err"'
err=$("$K" inspect "$T/ds" --sample x 2>&1); rc=$?
check "bad --sample exits 2" '[ $rc -eq 2 ] && grep -q "needs an index >= 0" <<<"$err"'
err=$("$K" inspect "$T/ds" --color pink 2>&1); rc=$?
check "bad --color exits 2" '[ $rc -eq 2 ] && grep -q "auto, always or never" <<<"$err"'
err=$("$K" inspect 2>&1); rc=$?
check "inspect without DIR exits 2" '[ $rc -eq 2 ] && grep -q "needs a dataset DIR" <<<"$err"'
err=$("$K" inspect "$T/ds" --sample 1 --tokenizer-path "$T/none" 2>&1); rc=$?
check "explicit missing tokenizer exits 1" '[ $rc -eq 1 ] && grep -q "$T/none" <<<"$err"'
err=$("$K" export "$T/ds" --format csv -o x 2>&1); rc=$?
check "export --format csv exits 2" '[ $rc -eq 2 ] && grep -q "not supported (only jsonl)" <<<"$err"'
err=$("$K" export "$T/ds" 2>&1); rc=$?
check "export without -o exits 2" '[ $rc -eq 2 ] && grep -q -- "-o FILE is required" <<<"$err"'
err=$("$K" export -o x 2>&1); rc=$?
check "export without DIR exits 2" '[ $rc -eq 2 ] && grep -q "needs a dataset DIR" <<<"$err"'
err=$("$K" export "$T/ds" -o /nonexistent/d/x.jsonl 2>&1); rc=$?
check "export unwritable exits 1" '[ $rc -eq 1 ] && grep -q "/nonexistent/d/x.jsonl: cannot create" <<<"$err"'
exit $fail
