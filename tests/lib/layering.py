#!/usr/bin/env python3
"""The layering rule of docs/architecture.md, checked on the sources.

    layering.py SOURCE_DIR

The rule is read from the line of docs/architecture.md that starts with "Modules depend downward
only:", e.g. `cli → gen/train/eval → teacher/data → text/tools/model → core`: folders of src/
from the top layer to the bottom one. A folder may use its own layer and the layers below it.

Two graphs are checked:
- includes: every `#include "..."` of a file under src/ and include/kdstep/. A header
  include/kdstep/X.h belongs to the folder of src/*/X.c (or, when no file is named after it, to the
  folder of the files that define the functions it declares). An include of a header whose folder is
  in a higher layer fails.
- calls: a file under src/ that names a function defined (not static) in another file under src/
  depends on that file. A call into a higher layer fails (it also catches a prototype written by
  hand instead of an include), and so does any circle between files: the files of each circle are
  printed with one function that makes each step.

Prints "layering: ok (...)" and exits 0, or prints one line per problem and exits 1.
"""
import os
import re
import sys

RULE_PREFIX = "Modules depend downward only:"


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def strip_comments_and_strings(text):
    """C text with comments, string and character literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * max(0, j - i - 2) + (c if j - i >= 2 else ""))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_rule(root):
    """Layers from the top (index 0) to the bottom, each a list of folder names."""
    doc = os.path.join(root, "docs", "architecture.md")
    for line in read(doc).splitlines():
        if line.startswith(RULE_PREFIX):
            body = line[len(RULE_PREFIX):].strip().strip(".").strip("`").strip()
            layers = [[f.strip() for f in part.strip(" `").split("/") if f.strip()] for part in body.split("→")]
            if len(layers) < 2 or any(not layer for layer in layers):
                sys.exit(f"layering: {doc}: cannot read the rule from '{line}'")
            return layers
    sys.exit(f"layering: {doc}: no line starting with '{RULE_PREFIX}' (the rule this test checks)")


INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# a function definition that is not static: a type, the name, the parameters, then the opening brace
DEF_RE = re.compile(r"^(?!static\b|typedef\b|extern\b|struct\b[^(]*;)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\(([^;{}]*)\)\s*(?:__attribute__\s*\(\(.*?\)\)\s*)?\{",
                    re.M)
IDENT_RE = re.compile(r"\b[A-Za-z_]\w*\b")
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else"}


def collect(root):
    files = {}  # relative path -> text
    for base in ("src", os.path.join("include", "kdstep")):
        for d, _, names in os.walk(os.path.join(root, base)):
            for name in sorted(names):
                if name.endswith((".c", ".h", ".inc")):
                    p = os.path.join(d, name)
                    files[os.path.relpath(p, root)] = read(p)
    return files


def folder_of(rel):
    parts = rel.split(os.sep)
    return parts[1] if parts[0] == "src" and len(parts) > 2 else None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    layers = read_rule(root)
    level = {}  # folder -> layer index (0 = top)
    for i, layer in enumerate(layers):
        for f in layer:
            level[f] = i
    files = collect(root)
    problems = []
    for rel in files:
        f = folder_of(rel)
        if f is not None and f not in level:
            problems.append(f"{rel}: folder src/{f}/ is in no layer of docs/architecture.md's rule: add it there")

    # ---- functions defined (not static) in each .c file under src/
    defined = {}  # function -> file
    statics = {}
    stripped = {}
    for rel, text in files.items():
        if rel.startswith("src") and rel.endswith(".c"):
            s = strip_comments_and_strings(text)
            stripped[rel] = s
            statics[rel] = set(re.findall(r"^static\b[^;{=]*?\b([A-Za-z_]\w*)\s*\(", s, re.M))
            for m in DEF_RE.finditer(s):
                name = m.group(1)
                if name in KEYWORDS or name == "main":
                    continue
                if name in defined and defined[name] != rel:
                    problems.append(f"{rel}: {name} is defined here and in {defined[name]}")
                defined[name] = rel

    # ---- headers: include/kdstep/X.h -> the folder of src/*/X.c, else of the files that define what
    # it declares (a header split over several files, as h5data.h)
    owner = {}
    for rel, text in files.items():
        if not rel.startswith("include"):
            continue
        h = os.path.basename(rel)
        stem = os.path.splitext(h)[0]
        named = [r for r in stripped if os.path.basename(r) == stem + ".c"]
        if named:
            owner[h] = folder_of(named[0])
            continue
        folders = sorted({folder_of(defined[n]) for n in set(IDENT_RE.findall(strip_comments_and_strings(text)))
                          if n in defined})
        if len(folders) == 1:
            owner[h] = folders[0]
        elif folders:
            problems.append(f"{rel}: declares functions of several folders ({', '.join(folders)}): one header per module")

    def layer_name(f):
        return "/".join(layers[level[f]])

    # ---- the include rule
    n_includes = 0
    for rel, text in sorted(files.items()):
        mine = folder_of(rel) if rel.startswith("src") else owner.get(os.path.basename(rel))
        if mine not in level:
            continue
        for m in INCLUDE_RE.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            if inc.startswith("kdstep/"):
                h = inc[len("kdstep/"):]
                if h in ("version.h", "simd.h"):
                    continue  # no code: generated by CMake from version.h.in; target_clones macros
                f = owner.get(h)
                if f is None:
                    problems.append(f"{rel}:{line}: includes {inc}, which no module under src/ owns "
                                    f"(name the header after its .c file)")
                    continue
            else:  # a folder's own header ("common.h")
                target = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                if target not in files:
                    continue
                f = folder_of(target)
            n_includes += 1
            if f in level and level[f] < level[mine]:
                problems.append(f"{rel}:{line}: includes {inc} (src/{f}/, layer {layer_name(f)}) from layer "
                                f"{layer_name(mine)}: an upward include; move the code it needs down, or this file up")

    # ---- the call graph between .c files
    edges = {rel: {} for rel in stripped}  # file -> {file it calls: a function that makes the edge}
    for rel, s in stripped.items():
        for name in sorted(set(IDENT_RE.findall(s))):
            to = defined.get(name)
            if to and to != rel and name not in statics[rel]:
                edges[rel].setdefault(to, name)
    n_edges = sum(len(e) for e in edges.values())
    for rel in sorted(edges):
        for to, name in sorted(edges[rel].items()):
            a, b = folder_of(rel), folder_of(to)
            if a in level and b in level and level[b] < level[a]:
                problems.append(f"{rel}: calls {name} of {to} (layer {layer_name(b)}) from layer {layer_name(a)}: "
                                f"an upward call")

    # circles: strongly connected components (Tarjan, iterative)
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    for comp in comps:
        # one cycle through the component, by breadth-first search back to its first file
        members, first = set(comp), comp[0]
        prev, queue = {first: None}, [first]
        cycle = None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in sorted(edges[v]):
                if w == first:
                    cycle = [v]
                    while prev[cycle[-1]] is not None:
                        cycle.append(prev[cycle[-1]])
                    cycle.reverse()
                    break
                if w in members and w not in prev:
                    prev[w] = v
                    queue.append(w)
        cycle.append(first)
        steps = " -> ".join(f"{cycle[i]} ({edges[cycle[i]][cycle[i + 1]]})" for i in range(len(cycle) - 1))
        problems.append(f"circle between {len(comp)} files ({', '.join(comp)}): {steps} -> {first}; "
                        f"move the shared code into a file both can use")

    for p in problems:
        print(f"layering: {p}")
    if problems:
        print(f"layering: FAILED: {len(problems)} problem(s)")
        return 1
    print(f"layering: ok ({len(files)} files, {n_includes} project includes, {n_edges} call edges between "
          f"{len(stripped)} .c files, {len(layers)} layers: {' -> '.join('/'.join(l) for l in layers)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
