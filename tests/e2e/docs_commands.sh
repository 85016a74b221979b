#!/usr/bin/env bash
# The docs cannot drift from the code: every `kdstep <subcommand>` written in code in README.md or
# docs/*.md names a subcommand that exists, every flag written after it appears in that command's
# --help, and every script the docs name (jobs/, slurm/, tests/) exists.
set -uo pipefail
cd "$KD_SOURCE_DIR"
fail=0 checked=0
subs=" $("$KDSTEP" --help | awk '/^commands:/{f=1;next} /^$/{f=0} f{print $1}' | tr '\n' ' ') "
while IFS=$'\t' read -r file cmd; do
  if [[ "$file" == PATH ]]; then
    [[ -f "$cmd" ]] || { echo "FAIL a doc names $cmd, which does not exist"; fail=1; }
    continue
  fi
  read -r _ sub word _ <<<"$cmd"
  [[ "$sub" == --help || "$sub" == --version ]] && continue
  if [[ "$subs" != *" $sub "* ]]; then echo "FAIL $file: no subcommand '$sub' in: $cmd"; fail=1; continue; fi
  help=$("$KDSTEP" "$sub" --help 2>&1)
  [[ "$word" =~ ^[a-z]+$ ]] && help+=$("$KDSTEP" "$sub" "$word" --help 2>&1)
  for flag in $(grep -o -- ' --[a-z][a-z-]*' <<<" $cmd" | tr -d ' '); do
    grep -q -- "$flag" <<<"$help" || { echo "FAIL $file: 'kdstep $sub' has no flag $flag (in: $cmd)"; fail=1; }
  done
  checked=$((checked + 1))
done < <(/usr/bin/python3 tests/lib/doc_commands.py README.md docs/*.md | sort -u)
echo "checked $checked kdstep invocations written in README.md and docs/"
[[ $checked -gt 20 ]] || { echo "FAIL too few invocations found"; fail=1; }
exit $fail
