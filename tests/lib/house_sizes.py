#!/usr/bin/python3
"""Where the house is growing: the ten largest source files and the ten longest functions under src/.

    /usr/bin/python3 tests/lib/house_sizes.py [N]

Prints two tables (lines, path; lines, function at path:line). Generated tables (*.inc) are left out.
The project's rule (PREAMBLE/architecture.md) is no source file over 1,000 lines and no function over
150 lines; entries over those limits are marked with "!". Information only: it never fails.

A function is found the way the code is written here (K&R braces, definitions at column 0): a line at
column 0 that opens a parameter list, and whose signature ends in "{", up to the next "}" at column 0.
"""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FILE_LIMIT, FUNC_LIMIT = 1000, 150
SIG_START = re.compile(r"^(?!typedef|struct\s+\w+\s*\{|enum|union|#|static\s+const\s)[A-Za-z_][\w\s\*,]*?\b(\w+)\s*\(")


def sources(root):
    for d, _, files in os.walk(os.path.join(root, "src")):
        for f in files:
            if f.endswith((".c", ".h")):
                yield os.path.join(d, f)


def functions(lines):
    """(name, first line 1-based, length in lines) of each function definition."""
    i, n = 0, len(lines)
    while i < n:
        m = SIG_START.match(lines[i])
        if not m:
            i += 1
            continue
        # the signature may span lines; it is a definition when it ends in "{" before any ";"
        j = i
        while j < n and not lines[j].rstrip().endswith("{") and ";" not in lines[j]:
            j += 1
        if j >= n or ";" in lines[j] and not lines[j].rstrip().endswith("{"):
            i += 1
            continue
        k = j + 1
        if not lines[j].lstrip().startswith("}"):
            while k < n and not lines[k].startswith("}"):
                k += 1
        yield m.group(1), i + 1, k - i + 1
        i = k + 1


def main():
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    files, funcs = [], []
    for path in sources(ROOT):
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        rel = os.path.relpath(path, ROOT)
        files.append((len(lines), rel))
        funcs += [(length, name, rel, line) for name, line, length in functions(lines)]
    files.sort(key=lambda x: (-x[0], x[1]))
    funcs.sort(key=lambda x: (-x[0], x[2], x[3]))
    print(f"largest source files under src/ (limit {FILE_LIMIT} lines; *.inc left out)")
    for n, rel in files[:top]:
        print(f"  {n:6d} {'!' if n > FILE_LIMIT else ' '} {rel}")
    print(f"longest functions under src/ (limit {FUNC_LIMIT} lines)")
    for n, name, rel, line in funcs[:top]:
        print(f"  {n:6d} {'!' if n > FUNC_LIMIT else ' '} {name}  {rel}:{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
