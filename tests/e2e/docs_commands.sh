#!/usr/bin/env bash
# The docs cannot drift from the code.
# 1. Every command written in README.md and docs/*.md (the rule for what is a command is at the top of
#    tests/lib/doc_commands.py: every line of ```sh/bash/shell/console blocks, every ```python block,
#    and inline `code` that starts with a program and has an argument) has one record in
#    tests/lib/doc_commands.txt: run by a tests/*/docs_run_GROUP.sh exactly as written, run by another
#    named test that exists, or manual with its reason. An unclassified command, a record whose
#    command left the docs, an unlabelled fence, or a record naming a missing test fails here.
# 2. Every `kdstep <subcommand>` written anywhere in code (any fence, inline) names a subcommand that
#    exists, and every flag written after it appears in that command's --help.
# 3. Every script the docs name (jobs/, slurm/, tests/) exists.
set -uo pipefail
cd "$KD_SOURCE_DIR"
fail=0 checked=0
declare -A HELP  # --help text per "subcommand verb", asked once
/usr/bin/python3 tests/lib/doc_commands.py check || fail=1

# The rule itself, on a made-up tree: what is extracted, and each way the check fails.
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/docs" "$t/tests/lib" "$t/tests/e2e"
touch "$t/tests/e2e/docs_run_g.sh" "$t/tests/e2e/other.sh"
cat >"$t/README.md" <<'MD'
Run `kdstep inspect d --sample 0`, not `kdstep eval` or `kdstep prompts synth` or `tests/e2e/other.sh`;
`X=1 tests/e2e/other.sh` and `kdstep --help` are commands.
```sh
kdstep a --x 1 \
    --y 2          # a comment
# a comment line

kdstep b ...
```
```console
$ kdstep c
output line
```
```python
print(1)
```
```text
kdstep not-a-command
```
```
unlabelled
```
1. a list item:
   ```console
   $ kdstep d
   ```
~~~
kdstep hidden
~~~
MD
cat >"$t/tests/lib/doc_commands.txt" <<'TXT'
README.md: kdstep a --x 1 --y 2
    run g
README.md: kdstep b ...
    by tests/e2e/other.sh: a reason
README.md: kdstep c
    manual: a reason
README.md: python: print(1)
    run nogroup
README.md: kdstep gone
    run g
README.md: X=1 tests/e2e/other.sh
    by tests/e2e/missing.sh: a reason
TXT
listed=$(KD_DOCS_ROOT="$t" /usr/bin/python3 tests/lib/doc_commands.py list | cut -f3 | tr '\n' '|')
want="kdstep a --x 1 --y 2|kdstep b ...|kdstep c|python: print(1)|kdstep d|kdstep inspect d --sample 0|X=1 tests/e2e/other.sh|kdstep --help|"
[[ "$listed" == "$want" ]] || { echo "FAIL the rule extracted: $listed"; echo "     expected:          $want"; fail=1; }
out=$(KD_DOCS_ROOT="$t" /usr/bin/python3 tests/lib/doc_commands.py check); rc=$?
[[ $rc -eq 1 ]] || { echo "FAIL check exited $rc on a tree with problems"; fail=1; }
for want in "README.md:20: a fenced block with no language: say sh for commands, text for the rest" \
            "README.md:27: a ~~~ fence: use \`\`\` so the check sees it" "    kdstep d" \
            "no test tests/*/docs_run_nogroup.sh runs group nogroup" \
            "tests/e2e/missing.sh does not exist" \
            "'kdstep gone' is no longer in README.md (remove or update the record)" \
            "unclassified command (add it to tests/lib/doc_commands.txt" \
            "    kdstep inspect d --sample 0" "    kdstep --help"; do
  grep -qF -- "$want" <<<"$out" || { echo "FAIL the check did not say: $want"; echo "$out"; fail=1; }
done
script=$(KD_DOCS_ROOT="$t" /usr/bin/python3 tests/lib/doc_commands.py script g)
grep -qF '{ kdstep a --x 1 --y 2 "${MORE[@]}"' <<<"$script" || { echo "FAIL script g does not run 'kdstep a' with MORE appended"; fail=1; }

subs=" $("$KDSTEP" --help | awk '/^commands:/{f=1;next} /^$/{f=0} f{print $1}' | tr '\n' ' ') "
while IFS= read -r cmd; do
  read -r _ sub word _ <<<"$cmd"
  [[ "$sub" == --help || "$sub" == --version ]] && continue
  if [[ "$subs" != *" $sub "* ]]; then echo "FAIL no subcommand '$sub' in: $cmd"; fail=1; continue; fi
  [[ "$word" =~ ^[a-z]+$ ]] || word=""
  if [[ -z "${HELP[$sub $word]+x}" ]]; then
    HELP[$sub $word]=$("$KDSTEP" "$sub" --help 2>&1)
    [[ -n "$word" ]] && HELP[$sub $word]+=$("$KDSTEP" "$sub" "$word" --help 2>&1)
  fi
  help=${HELP[$sub $word]}
  for flag in $(grep -o -- ' --[a-z][a-z-]*' <<<" $cmd" | tr -d ' '); do
    grep -q -- "$flag" <<<"$help" || { echo "FAIL 'kdstep $sub' has no flag $flag (in: $cmd)"; fail=1; }
  done
  checked=$((checked + 1))
done < <(/usr/bin/python3 - README.md docs/*.md <<'PY' | sort -u
import re, sys
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    code = re.findall(r"```[^\n`]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    for block in code:
        for line in block.replace("\\\n", " ").splitlines():
            for m in re.finditer(r"(?:^|[\s(;|&$])(kdstep (?:[a-z][\w-]*)(?: [^|;&#`]*)?)", line):
                print(m.group(1).strip())
PY
)
echo "checked the flags of $checked kdstep invocations written in README.md and docs/"
[[ $checked -gt 20 ]] || { echo "FAIL too few invocations found"; fail=1; }

while IFS= read -r p; do
  [[ -f "$p" ]] || { echo "FAIL a doc names $p, which does not exist"; fail=1; }
done < <(/usr/bin/python3 tests/lib/doc_commands.py paths | sort -u)
exit $fail
