"""Print every kdstep invocation written in code (fenced blocks and `inline code`) of the given
Markdown files, one per line as FILE<TAB>COMMAND, and every script path they name as PATH<TAB>PATH."""
import re, sys

for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    for block in code:
        for line in block.splitlines():
            for m in re.finditer(r"(?:^|[\s(;|&$])(kdstep (?:[a-z][\w-]*)(?: [^|;&#`]*)?)", line):
                print(f"{path}\t{m.group(1).strip()}")
    for m in re.findall(r"\b((?:jobs|slurm|tests)/[\w/-]+\.(?:sh|sbatch))\b", text):
        print(f"PATH\t{m}")
