#!/usr/bin/env python3
"""Print the hashes that say whether a refactor changed any output of a job's workdir.

    /usr/bin/python3 tests/lib/output_hashes.py runs/demo > after.txt
    diff before.txt after.txt        # empty: byte-identical

The dataset is compared as arrays (every dataset in dataset/dataset.h5, read through its virtual
sources with h5py: HDF5 may lay a file out differently while the arrays stay the same); the final
weights, predictions and eval report are compared as files.
"""
import hashlib
import sys
from pathlib import Path

import h5py
import numpy as np


def arrays(path):
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = np.ascontiguousarray(obj[()])
                h = hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()
                out.append(f"{h}  dataset.h5:/{name}")
        f.visititems(visit)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: output_hashes.py WORKDIR   (the job's workdir, e.g. runs/demo)")
    wd = Path(sys.argv[1])
    lines = arrays(wd / "dataset" / "dataset.h5")
    for rel in ("train/final/model.safetensors", "eval/predictions.jsonl", "eval/report.json"):
        p = wd / rel
        if not p.is_file():
            sys.exit(f"output_hashes: {p} is missing (run the job first: jobs/quickstart.sh)")
        lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
