#!/usr/bin/env bash
# The dependency rule of docs/architecture.md ("Modules depend downward only: ..."), checked on the
# sources by tests/lib/layering.py: no include of a header from a higher layer, no call into a higher
# layer, no circle of calls between files. Its self-check plants each kind of defect in a copy of the
# tree and requires the check to fail on it, naming the defect.
set -u
S="${KD_SOURCE_DIR:?}"
py=/usr/bin/python3
[[ -x $py ]] || { echo "$py missing"; exit 77; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$py" "$S/tests/lib/layering.py" "$S" >"$tmp/tree.out" 2>&1; rc=$?
cat "$tmp/tree.out"
check "the tree keeps the rule" '[[ $rc -eq 0 ]]'

fresh() { rm -rf "$tmp/t"; mkdir -p "$tmp/t"; cp -r "$S/src" "$S/include" "$tmp/t/"; mkdir -p "$tmp/t/docs"; cp "$S/docs/architecture.md" "$tmp/t/docs/"; }
planted() { # NAME EXPECTED-TEXT: the check must fail and say EXPECTED-TEXT
  local name=$1 want=$2
  "$py" "$S/tests/lib/layering.py" "$tmp/t" >"$tmp/$name.out" 2>&1; local r=$?
  check "$name: fails" '[[ $r -eq 1 ]]'
  check "$name: names it" 'grep -qF -- "$want" "$tmp/$name.out" || { cat "$tmp/$name.out"; false; }'
}

# 1. an upward include: core includes the trainer's header
fresh
sed -i '0,/^#include "kdstep\/error.h"/s//#include "kdstep\/error.h"\n#include "kdstep\/trainer.h"/' "$tmp/t/src/core/error.c"
grep -q 'kdstep/trainer.h' "$tmp/t/src/core/error.c" || { echo "FAIL could not plant the include"; exit 1; }
planted upward_include "src/core/error.c:"
check "upward_include: says why" 'grep -qF "includes kdstep/trainer.h (src/train/, layer gen/train/eval) from layer core: an upward include" "$tmp/upward_include.out"'

# 2. a circle: the teacher's shared helpers call back into the dispatcher that uses them (the circle
# src/teacher had before common.c)
fresh
cat >>"$tmp/t/src/teacher/common.c" <<'C'

int kd_teacher_planted_back_call(kd_teacher *t) { return kd_teacher_pending(t) > 0; }
C
planted circle "src/teacher/common.c (kd_teacher_pending) -> src/teacher/teacher.c"

# 3. a circle of three files, and a prototype written by hand instead of an include
fresh
cat >"$tmp/t/src/tools/planted_a.c" <<'C'
int kd_planted_b(int x);
int kd_planted_a(int x) { return x > 0 ? kd_planted_b(x - 1) : 0; }
C
cat >"$tmp/t/src/tools/planted_b.c" <<'C'
int kd_planted_c(int x);
int kd_planted_b(int x) { return kd_planted_c(x); }
C
cat >"$tmp/t/src/tools/planted_c.c" <<'C'
int kd_planted_a(int x);
int kd_planted_c(int x) { return kd_planted_a(x); }
C
planted circle3 "src/tools/planted_a.c (kd_planted_b) -> src/tools/planted_b.c (kd_planted_c) -> src/tools/planted_c.c (kd_planted_a) -> src/tools/planted_a.c"

# 4. an upward call through a hand-written prototype (no include to see)
fresh
cat >>"$tmp/t/src/text/chat.c" <<'C'

void kd_train_request_stop(int sig);
int kd_chat_planted(void) { kd_train_request_stop(0); return 0; }
C
planted upward_call "src/text/chat.c: calls kd_train_request_stop of src/train/trainer.c"

# 5. the rule itself must be readable from the doc
fresh
sed -i 's/^Modules depend downward only:/Modules depend on:/' "$tmp/t/docs/architecture.md"
planted no_rule "no line starting with 'Modules depend downward only:'"

exit $fail
