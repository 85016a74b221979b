#!/usr/bin/env bash
# Generation benchmark with the in-process stub teacher: samples/s and tokens/s per rank, the share of
# time in teacher, tokenize, extract (+ mask alignment) and HDF5, the pipeline's own throughput (all
# but the teacher) against the bare tokenizer's on the same texts (measured inside the same run), and
# bytes on disk per token. Goals: own work >= 50% of the tokenizer's tokens/s; HDF5 < 10% of the time.
# HDF5 time is what the worker's own path spends in it (appends, waiting for its shard's writer thread,
# close); the writer thread's sealing, which overlaps the rest, is reported beside it.
# The pipeline tokenizes through a segment cache (the system turn repeats); the tokenizer peer stays
# the plain, uncached kd_tokenizer_encode: KDSTEP_BENCH_TOKENIZER_PEER=1 makes each worker also encode
# every text without the cache, timed apart (taken out of the wall time for samples/s) and compared
# with the cached result (any difference fails the bench). With a binary from before the cache (no
# tokenizer_peer_s in stats.json) the pipeline's own tokenize time is the peer, as it was then.
#   tests/bench/generate.sh [N_PROMPTS] [RANKS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KD_BUILD_DIR:=$root/build}" "${KDSTEP:=$KD_BUILD_DIR/kdstep}" "${KD_SOURCE_DIR:=$root}"
export KD_BUILD_DIR KDSTEP KD_SOURCE_DIR
source "$root/tests/lib/fixtures.sh"
n=${1:-2000}; ranks=${2:-1}
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$KDSTEP" prompts synth --tools "$root/configs/tools.json" -n "$n" --seed 1 -o "$tmp/p.jsonl" >/dev/null
KDSTEP_NO_PROGRESS=1 KDSTEP_BENCH_TOKENIZER_PEER=1 kd_mpirun "$ranks" "$KDSTEP" generate --prompts "$tmp/p.jsonl" --out "$tmp/ds" --tokenizer-path "$tok" \
  --tools "$root/configs/tools.json" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
bytes=$(du -sb "$tmp/ds" | cut -f1)
/usr/bin/python3 - "$tmp/ds/stats.json" "$bytes" "$ranks" <<'PY'
import json, sys
st, nbytes, ranks = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
t = st["time_s"]; tok = st["tokens"]; wall = st["wall_s"]
busy = sum(t.values())
own = busy - t["teacher"]
workers = max(1, ranks - (1 if ranks > 1 else 0))
cache = st.get("tokenizer_cache")
peer = st.get("tokenizer_peer_s", 0.0) or t["tokenize"]  # the plain tokenizer on the same texts
if st.get("tokenizer_peer_s", 0.0):
    wall -= st["tokenizer_peer_s"] / workers  # the peer's encodes ran on the workers' own time
out = {
    "samples": st["samples"], "tokens": tok, "ranks": ranks,
    "samples_per_s_per_rank": round(st["samples"] / wall / workers, 1),
    "tokens_per_s_per_rank": round(tok / wall / workers),
    "share_teacher": round(t["teacher"] / busy, 3), "share_tokenize": round(t["tokenize"] / busy, 3),
    "share_extract": round(t["extract"] / busy, 3), "share_hdf5": round(t["hdf5"] / busy, 3),
    "share_other": round(t["other"] / busy, 3),
    "tokenizer_tokens_per_s": round(tok / peer),
    "pipeline_tokenize_tokens_per_s": round(tok / t["tokenize"]),
    "pipeline_own_tokens_per_s": round(tok / own),
    "own_vs_tokenizer": round(peer / own, 3),
    "tokcache_hit_rate": round(cache["hits"] / max(1, cache["lookups"]), 3) if cache else None,
    "tokcache_byte_share": round(cache["hit_bytes"] / max(1, cache["bytes"]), 3) if cache else None,
    "bytes_per_token": round(nbytes / tok, 3),
    # the shard writer threads' sealing and folding, overlapped with the work above
    "hdf5_background_s": round(st.get("hdf5_background_s", 0.0), 3),
    "hdf5_background_vs_busy": round(st.get("hdf5_background_s", 0.0) / busy, 3),
}
for k, v in out.items():
    print(f"{k:28s} {v}")
print(json.dumps(out))
if cache and cache["peer_mismatches"]:
    sys.exit(f"FAIL: {cache['peer_mismatches']} encodings through the tokenizer cache differ from the plain tokenizer's")
PY
