#!/usr/bin/python3
"""Build the project's tool pool (a build-time data-prep script; the product never runs it).

Reads the function documents of the BFCL v3 question files that are NOT used for evaluation
(parallel, parallel_multiple, live_multiple, live_parallel, live_parallel_multiple, live_irrelevance)
and of the glaive sample, and writes OpenAI `tools` arrays:

  OUT/tool_pool.json          every tool of the pool
  OUT/tool_pool.train.json    the train tools      (--split: a fixed share, chosen by a seeded hash)
  OUT/tool_pool.heldout.json  the held-out tools

Rules, in order:
  * a function whose name, or whose parameter schema (canonical JSON), appears in an evaluation file
    (simple, multiple, irrelevance, live_simple) is left out: those are evaluation only;
  * deduplicated by name, the first occurrence wins (sources in the order above, then glaive);
  * kept only with a description, an object parameter schema, and at most --max-chars characters of
    JSON (keeps the per-prompt tools block short enough to train on 2 cores);
  * BFCL type names become JSON Schema's (dict -> object, float -> number, tuple -> array, any -> no
    type), as kd_schema_normalize does.
The held-out share is the tools whose sha256("<seed>:<name>") sorts first, so the split depends only
on the seed and the names (not on Python's RNG). Same inputs, same bytes.

  jobs/make-tool-pool.py [--data ../shared/data] [--out configs] [--split 0.25] [--seed 17] [--max-chars 600]
"""
import argparse
import hashlib
import json
import os
import sys

EVAL_SETS = ["simple", "multiple", "irrelevance", "live_simple"]
POOL_SETS = ["parallel", "parallel_multiple", "live_multiple", "live_parallel", "live_parallel_multiple",
             "live_irrelevance"]
TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array"}


def canon(x):
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize(schema):
    if isinstance(schema, list):
        return [normalize(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "type" and isinstance(v, str):
            if v == "any":
                continue
            out[k] = TYPE_MAP.get(v, v)
        elif k == "properties" and isinstance(v, dict):
            out[k] = {pk: normalize(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, (dict, list)):
            out[k] = normalize(v)
        else:
            out[k] = v
    return out


def bfcl_records(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "configs"))
    ap.add_argument("--split", type=float, default=0.25, help="held-out share of the pool")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--max-chars", type=int, default=600)
    a = ap.parse_args()
    bfcl = os.path.join(a.data, "bfcl")
    if not os.path.isdir(bfcl):
        sys.exit(f"make-tool-pool: {bfcl} is missing (the BFCL v3 files; see ../shared/data/README.md)")

    eval_names, eval_schemas = set(), set()
    for s in EVAL_SETS:
        for r in bfcl_records(os.path.join(bfcl, f"BFCL_v3_{s}.json")):
            for fn in r["function"]:
                eval_names.add(fn["name"])
                eval_schemas.add(canon(fn.get("parameters")))
                eval_schemas.add(canon(normalize(fn.get("parameters"))))

    candidates = []
    for s in POOL_SETS:
        for r in bfcl_records(os.path.join(bfcl, f"BFCL_v3_{s}.json")):
            candidates.extend(r["function"])
    glaive = os.path.join(a.data, "glaive", "glaive_toolcall_en_demo.json")
    if os.path.exists(glaive):
        with open(glaive, encoding="utf-8") as f:
            for conv in json.load(f):
                candidates.extend(json.loads(conv["tools"]))

    pool, seen = [], set()
    for fn in candidates:
        name, desc, params = fn.get("name"), fn.get("description"), fn.get("parameters")
        if not isinstance(name, str) or not name or name in seen:
            continue
        if name in eval_names or canon(params) in eval_schemas:
            continue
        norm = normalize(params)
        if canon(norm) in eval_schemas:
            continue
        if not isinstance(desc, str) or not desc.strip() or not isinstance(norm, dict):
            continue
        if norm.get("type") != "object" or not isinstance(norm.get("properties", {}), dict):
            continue
        tool = {"type": "function", "function": {"name": name, "description": desc.strip(), "parameters": norm}}
        if len(canon(tool)) > a.max_chars:
            continue
        seen.add(name)
        pool.append(tool)

    def key(t):
        return hashlib.sha256(f"{a.seed}:{t['function']['name']}".encode()).hexdigest()

    order = sorted(pool, key=key)
    n_held = int(round(len(pool) * a.split))
    held = {t["function"]["name"] for t in order[:n_held]}
    os.makedirs(a.out, exist_ok=True)

    def write(name, tools):
        path = os.path.join(a.out, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n]\n")
        os.replace(path + ".tmp", path)

    write("tool_pool.json", pool)
    write("tool_pool.train.json", [t for t in pool if t["function"]["name"] not in held])
    write("tool_pool.heldout.json", [t for t in pool if t["function"]["name"] in held])
    print(f"make-tool-pool: {len(pool)} tools ({len(pool) - len(held)} train, {len(held)} held out, seed {a.seed}) "
          f"in {a.out}")


if __name__ == "__main__":
    main()
