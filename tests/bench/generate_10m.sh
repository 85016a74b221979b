#!/usr/bin/env bash
# Ten million prompts: rank 0 streams the prompt set and never holds it, so its memory does not grow
# with the prompt count. Writes a 10,000,000-line prompt set (short lines, ~0.5 GB) and a 100,000-line
# one, and runs the real coordinator over each on 2 ranks (rank 0 coordinates, rank 1 works) with the
# in-process stub teacher. `--slice 7/S` hands 100 prompts to the worker while rank 0 reads, counts and
# skips every line of the file, so the run is short but the coordinator walks all of it. Then the same
# command again: a resume that finds those 100 done (the done set is a bitmap over prompt ids up to
# ~10M: 1.25 MB) and streams the whole file once more. Reports rank 0's peak RSS (/usr/bin/time -v) for
# each and fails when the 10M runs need more than 1.25x (+8 MB) the 100k runs'.
#   tests/bench/generate_10m.sh [N_LINES]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KD_BUILD_DIR:=$root/build}" "${KDSTEP:=$KD_BUILD_DIR/kdstep}" "${KD_SOURCE_DIR:=$root}"
export KD_BUILD_DIR KDSTEP KD_SOURCE_DIR
source "$root/tests/lib/fixtures.sh"
big=${1:-10000000}; small=100000
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gen10m.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
[[ -x /usr/bin/time ]] || { echo "generate_10m: /usr/bin/time missing"; exit 77; }
lines() { # n file: short prompts over the registry's tools, one a line
  awk -v n="$1" 'BEGIN { split("Paris Tokyo Lima Oslo Cairo Perth Quito Dakar", c, " ");
    for (i = 0; i < n; i++) printf "{\"id\":\"p%d\",\"prompt\":\"What is the weather in %s today? (%d)\"}\n", i, c[i % 8 + 1], i % 997 }' >"$2"
}
t0=$(date +%s.%N); lines "$big" "$tmp/big.jsonl"; t1=$(date +%s.%N)
lines "$small" "$tmp/small.jsonl"
echo "generate_10m: wrote $big prompts ($(du -m "$tmp/big.jsonl" | cut -f1) MB) in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s"
run() { # name prompts slice-count
  local name=$1 prompts=$2 slices=$3
  local start end
  start=$(date +%s.%N)
  KDSTEP_NO_PROGRESS=1 kd_mpirun 2 bash -c '/usr/bin/time -v -o "$0.time.$OMPI_COMM_WORLD_RANK" "$@"' "$tmp/$name" \
    "$KDSTEP" generate --prompts "$prompts" --out "$tmp/ds-${name%%-*}" --tokenizer-path "$tok" \
    --tools "$root/configs/tools.json" --slice "7/$slices" >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; exit 1; }
  end=$(date +%s.%N)
  local rss wall
  rss=$(grep -o "Maximum resident set size (kbytes): [0-9]*" "$tmp/$name.time.0" | grep -o '[0-9]*$')
  wall=$(printf %.1f "$(echo "$end - $start" | bc)")
  local samples
  samples=$(/usr/bin/python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['samples'], s['failures'], s['already_done'])" "$tmp/ds-${name%%-*}/stats.json")
  echo "$name $rss $wall $samples" >>"$tmp/results"
  printf 'generate_10m: %-11s rank-0 peak RSS %7d KiB, wall %6s s, samples/failures/already done: %s\n' "$name" "$rss" "$wall" "$samples"
}
run small-fresh "$tmp/small.jsonl" $((small / 100))
run small-resume "$tmp/small.jsonl" $((small / 100))
run big-fresh "$tmp/big.jsonl" $((big / 100))
run big-resume "$tmp/big.jsonl" $((big / 100))
/usr/bin/python3 - "$tmp/results" "$big" "$small" <<'PY'
import json, sys
r = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
big, small = int(sys.argv[2]), int(sys.argv[3])
rss = {k: int(v[0]) for k, v in r.items()}
out = {"prompts_big": big, "prompts_small": small,
       "rss_kib_small_fresh": rss["small-fresh"], "rss_kib_big_fresh": rss["big-fresh"],
       "rss_kib_small_resume": rss["small-resume"], "rss_kib_big_resume": rss["big-resume"],
       "wall_s_big_fresh": float(r["big-fresh"][1]), "wall_s_big_resume": float(r["big-resume"][1]),
       "rss_ratio_fresh": round(rss["big-fresh"] / rss["small-fresh"], 3),
       "rss_ratio_resume": round(rss["big-resume"] / rss["small-resume"], 3)}
for name in ("fresh", "resume"):
    b, s = rss["big-" + name], rss["small-" + name]
    if b > 1.25 * s + 8192:
        sys.exit(f"FAIL: rank 0 needs {b} KiB for {big} prompts, {s} KiB for {small} ({name} run)")
for k in ("small-fresh", "big-fresh"):
    samples, failures, done = (int(x) for x in r[k][2:5])
    assert samples + failures == 100, f"{k}: {samples} samples + {failures} failures, expected 100 prompts"
for k in ("small-resume", "big-resume"):
    samples, failures, done = (int(x) for x in r[k][2:5])
    assert done == 100, f"{k}: resume found {done} prompts done, expected 100"
print(json.dumps(out))
PY
