"""The commands written in README.md and docs/*.md, and what runs each of them.

Which text is a command (the rule; tests/e2e/docs_commands.sh enforces it):
  1. Fences are ``` (indented too, as inside a list; a ~~~ fence fails the check). Every fenced
     block says what it holds. ```sh, ```bash, ```shell and ```console blocks hold
     commands; ```python blocks are programs; anything else (text, json, yaml, c, ...) is not run.
     A fence with no language fails the check (say `text` for output, layouts and diagrams).
  2. In a command block every line is a command: a line ending in a backslash continues on the next
     (joined with one space), `#` starts a comment when it begins the line or follows a blank, blank
     lines are skipped. In ```console only lines starting with "$ " are commands (the rest is output).
  3. A ```python block is one command: the whole block, run with /usr/bin/python3.
  4. An inline `code` span is a command when it is something a user types: its first word (after
     any VAR=value words) is a program from PROGRAMS or a repository script (jobs/, slurm/, tests/,
     ./ ... .sh/.sbatch/.py), and it has at least one argument or a VAR=value prefix. For kdstep the
     subcommand and its verb are the program's name, not arguments: `kdstep eval` and
     `kdstep prompts synth` name a command, `kdstep prompts check FILE` and `kdstep --help` are
     commands. A bare script path (`tests/e2e/extract.sh`) names a file; it must exist.
  5. A trailing " ..." in a command stands for "the rest of your flags"; the test that runs the
     command supplies them (docs_run.bash: the group's MORE array replaces it).

What runs each command is written in tests/lib/doc_commands.txt, one record per command: a line
"FILE: COMMAND" and under it one indented line, either
    run GROUP               executed, exactly as written, by tests/*/docs_run_GROUP.sh, in
                            the order of the table's records
    by TEST: REASON         run by that other test (which must exist), in the form REASON says
    manual: REASON          run by no test, and why (kept to the few that need hours or hardware)
A command found in the docs with no record, or a record whose command is no longer in the docs,
fails the check, so a new or changed doc command cannot slip in unclassified.

usage: doc_commands.py check                 list problems, print the counts; exit 1 on a problem
       doc_commands.py list                  every command as FILE<TAB>KIND<TAB>COMMAND
       doc_commands.py script GROUP          a bash script running GROUP's commands in the table's order
       doc_commands.py paths                 every script path the docs name
"""
import glob
import os
import re
import shlex
import textwrap
import sys

# KD_DOCS_ROOT: another tree to check (the test of this rule runs it on a made-up one)
ROOT = os.environ.get("KD_DOCS_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE = os.path.join(ROOT, "tests", "lib", "doc_commands.txt")
SHELL_LANGS = {"sh", "bash", "shell", "console"}
UNLABELLED_OK = set()
PROGRAMS = {"kdstep", "mpirun", "srun", "sbatch", "scancel", "squeue", "sinfo", "ctest", "cmake", "h5dump",
            "python3", "bash", "source"}
SCRIPT = re.compile(r"^(?:\./|(?:jobs|slurm|tests)/)[\w./*<>-]+\.(?:sh|sbatch|py)$")
ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def doc_files():
    return ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def kdstep_names():
    """kdstep subcommands with verbs: the words after `kdstep` that name a command, not arguments."""
    return {"prompts": {"synth", "check"}, "teacher": {"serve"}, "tokenizer": {"train", "corpus"}}


def strip_comment(line):
    if line.lstrip().startswith("#"):
        return ""
    return re.sub(r"\s+#(\s.*)?$", "", line)


def shell_commands(body, lang):
    out, cur = [], ""
    for raw in body.splitlines():
        line = raw
        if lang == "console":
            if cur == "":
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
        line = strip_comment(line).rstrip()
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cur += line.strip()
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def inline_is_command(span):
    try:
        words = shlex.split(span)
    except ValueError:
        words = span.split()
    env = 0
    while words and ASSIGN.match(words[0]):
        words, env = words[1:], env + 1
    if not words:
        return False
    prog, args = words[0], words[1:]
    if prog == "kdstep":
        if args and args[0] in kdstep_names() and len(args) > 1 and args[1] in kdstep_names()[args[0]]:
            args = args[2:]
        elif args and re.fullmatch(r"[a-z]+", args[0]):
            args = args[1:]
        return bool(args) or env > 0
    if prog in PROGRAMS:
        return bool(args) or env > 0
    if SCRIPT.match(prog):
        return bool(args) or env > 0
    return False


def extract(problems):
    """[(file, kind, command, line)] in doc order; kind is sh or python."""
    cmds = []
    for path in doc_files():
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        fences = list(re.finditer(r"^[ \t]*```([^\n`]*)\n(.*?)^[ \t]*```[ \t]*$", text, re.S | re.M))
        for m in re.finditer(r"^[ \t]*~~~", text, re.M):
            problems.append(f"{path}:{text.count(chr(10), 0, m.start()) + 1}: a ~~~ fence: use ``` so the check sees it")
        rest, last = [], 0
        for m in fences:
            line = text.count("\n", 0, m.start()) + 1
            lang = m.group(1).strip().lower()
            if lang == "" and path not in UNLABELLED_OK:
                problems.append(f"{path}:{line}: a fenced block with no language: say sh for commands, text for the rest")
            if lang in SHELL_LANGS:
                for c in shell_commands(m.group(2), lang):
                    cmds.append((path, "sh", c, line))
            elif lang == "python":
                cmds.append((path, "python", textwrap.dedent(m.group(2)), line))
            rest.append(text[last:m.start()])
            last = m.end()
        rest.append(text[last:])
        prose = "".join(rest)
        for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", prose):
            span = m.group(1).strip()
            if inline_is_command(span):
                cmds.append((path, "sh", span, text.count("\n", 0, max(text.find(m.group(0)), 0)) + 1))
    seen, uniq = set(), []
    for c in cmds:
        if (c[0], key(c)) not in seen:
            seen.add((c[0], key(c)))
            uniq.append(c)
    return uniq


def key(c):
    """How the table names a command: the command itself, or `python: FIRST LINE...` for a program."""
    if c[1] == "python":
        return "python: " + c[2].strip().splitlines()[0]
    return c[2]


def load_table(problems):
    table, cur = {}, None
    for n, line in enumerate(open(TABLE, encoding="utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not line[0].isspace():
            f, sep, cmd = line.rstrip("\n").partition(": ")
            if not sep:
                problems.append(f"{TABLE}:{n}: expected 'FILE: COMMAND'")
                continue
            cur = (f, cmd)
            if cur in table:
                problems.append(f"{TABLE}:{n}: {f}: '{cmd}' is listed twice")
            table[cur] = None
            continue
        if cur is None or table[cur] is not None:
            problems.append(f"{TABLE}:{n}: a disposition line without its 'FILE: COMMAND' line")
            continue
        d = line.strip()
        m = re.fullmatch(r"run ([a-z0-9_]+)|by (\S+): (.+)|manual: (.+)", d)
        if not m:
            problems.append(f"{TABLE}:{n}: expected 'run GROUP', 'by TEST: REASON' or 'manual: REASON', got: {d}")
            continue
        if m.group(1):
            if not glob.glob(os.path.join(ROOT, "tests", "*", f"docs_run_{m.group(1)}.sh")):
                problems.append(f"{TABLE}:{n}: no test tests/*/docs_run_{m.group(1)}.sh runs group {m.group(1)}")
            table[cur] = ("run", m.group(1))
        elif m.group(2):
            if not os.path.exists(os.path.join(ROOT, m.group(2))):
                problems.append(f"{TABLE}:{n}: {m.group(2)} does not exist")
            table[cur] = ("by", m.group(2))
        else:
            table[cur] = ("manual", m.group(4))
    for k, v in table.items():
        if v is None:
            problems.append(f"{TABLE}: {k[0]}: '{k[1]}' has no disposition line")
    return table


def script(group, cmds, table):
    """Bash that runs the group's commands in the table's order. For each command N the caller's hook
    `kd_before N FILE COMMAND` runs first (it may set the MORE array, start stand-ins, export knobs,
    set KD_BG=1 to run a server in the background, or KD_SKIP=REASON to skip it);
    the command's stdout and stderr go to $KD_LOG/N.out and N.err, then `kd_after N` runs."""
    out = ["# generated by tests/lib/doc_commands.py script " + group]
    n = 0
    by_key = {(c[0], key(c)): c for c in cmds}
    for k, d in table.items():  # in the table's order: a group may span several docs
        if d != ("run", group) or k not in by_key:
            continue
        c = by_key[k]
        n += 1
        out.append(f"MORE=(); kd_before {n} {shlex.quote(c[0])} {shlex.quote(key(c))}")
        out.append(f"echo \"+ [{n}] \"{shlex.quote(c[0] + ': ' + key(c))} >&2")
        if c[1] == "python":
            out.append(f"cat >\"$KD_LOG/{n}.py\" <<'KD_DOC_PYTHON'\n{c[2]}KD_DOC_PYTHON")
            body = f"/usr/bin/python3 \"$KD_LOG/{n}.py\" \"${{MORE[@]}}\""
        else:
            body = c[2][:-4] if c[2].endswith(" ...") else c[2]
            body += ' "${MORE[@]}"'
        io = f">\"$KD_LOG/{n}.out\" 2>\"$KD_LOG/{n}.err\""
        # a server (the hook set KD_BG=1) runs in the background until the test ends; exec, so that
        # its pid is the server's and the cleanup's kill reaches it
        # the hook may set KD_SKIP=REASON (an input this machine lacks, e.g. ../shared/data)
        out.append(f"if [[ -n ${{KD_SKIP:-}} ]]; then echo \"skipped [{n}]: $KD_SKIP\"; KD_SKIPPED+=({n}); KD_SKIP=\n"
                   f"elif [[ ${{KD_BG:-0}} == 1 ]]; then KD_BG=0; ( exec {body}\n) {io} & KD_BG_PIDS+=($!); kd_after {n}\n"
                   f"else {{ {body}\n}} {io} || kd_failed {n} $?; kd_after {n}; fi")
    out.append(f"KD_RAN={n}")
    return "\n".join(out) + "\n"


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    problems = []
    cmds = extract(problems)
    if mode == "list":
        for c in cmds:
            print(f"{c[0]}\t{c[1]}\t{key(c)}")
        return 0
    if mode == "paths":
        for path in doc_files():
            for m in re.findall(r"\b((?:jobs|slurm|tests)/[\w/-]+\.(?:sh|sbatch|py))\b", open(os.path.join(ROOT, path)).read()):
                print(m)
        return 0
    table = load_table(problems)
    if mode == "script":
        sys.stdout.write(script(sys.argv[2], cmds, table))
        return 0
    found = {(c[0], key(c)) for c in cmds}
    for c in cmds:
        if (c[0], key(c)) not in table:
            problems.append(f"{c[0]}:{c[3]}: unclassified command (add it to tests/lib/doc_commands.txt with "
                            f"'run GROUP', 'by TEST: REASON' or 'manual: REASON'):\n    {key(c)}")
    for k in table:
        if k not in found:
            problems.append(f"tests/lib/doc_commands.txt: '{k[1]}' is no longer in {k[0]} (remove or update the record)")
    kinds = {}
    for c in cmds:
        d = table.get((c[0], key(c)))
        if d:
            kinds[d[0]] = kinds.get(d[0], 0) + 1
    for p in problems:
        print("FAIL " + p)
    print(f"{len(cmds)} commands in README.md and docs/: {kinds.get('run', 0)} run by docs_run_* tests, "
          f"{kinds.get('by', 0)} run by another named test, {kinds.get('manual', 0)} manual")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
