"""Compare kdstep datasets as sets keyed by prompt id (test oracle, h5py).

usage: compare_datasets.py DIR_A DIR_B [...]   exits 1 on any difference
Checks that each dataset holds every prompt id at most once, and that the samples of equal ids are
identical in every token array, mask, teacher array and text.
"""
import sys
import h5py
import numpy as np

TOKEN = ["tokens/input_ids", "tokens/loss_mask", "tokens/tool_name_mask", "tokens/json_mask",
         "tokens/integration_mask", "teacher/topk_ids", "teacher/topk_logprobs", "teacher/tail_logprob"]
TEXT = ["prompt_key", "prompt", "teacher_text", "metadata"]


def load(d):
    with h5py.File(d + "/dataset.h5", "r") as f:
        off = f["samples/offsets"][:]
        pid = f["samples/prompt_id"][:]
        plen = f["samples/prompt_len"][:]
        arrays = {k: f[k][:] for k in TOKEN}
        texts = {k: (f["text/" + k][:], f["text/" + k + "_offsets"][:]) for k in TEXT}
    out = {}
    for i, p in enumerate(pid):
        if int(p) in out:
            sys.exit(f"{d}: prompt id {p} appears twice")
        a, b = off[i], off[i + 1]
        s = {k: v[a:b] for k, v in arrays.items()}
        s["prompt_len"] = plen[i]
        for k, (buf, o) in texts.items():
            s["text/" + k] = buf[o[i]:o[i + 1]].tobytes()
        out[int(p)] = s
    return out


def main():
    sets = [(d, load(d)) for d in sys.argv[1:]]
    d0, ref = sets[0]
    for d, other in sets[1:]:
        if set(ref) != set(other):
            missing, extra = sorted(set(ref) - set(other))[:5], sorted(set(other) - set(ref))[:5]
            sys.exit(f"{d} vs {d0}: different prompt ids (missing {missing}, extra {extra})")
        for p in ref:
            for k, v in ref[p].items():
                w = other[p][k]
                same = (v == w) if isinstance(v, bytes) else np.array_equal(v, w, equal_nan=True) if np.asarray(v).dtype.kind == "f" else np.array_equal(v, w)
                if not same:
                    sys.exit(f"{d} vs {d0}: prompt id {p}: {k} differs")
    print(f"identical: {len(ref)} samples in each of {len(sets)} datasets")


main()
