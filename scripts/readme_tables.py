"""Pastes `furcate experiment` tables into the README and the user guide, so
that no number in them is typed: every `### <title>` section of the given
results.md files replaces the section of the same title (from its heading to
the end of its table, less image lines) in README.md or in a chapter of
docs/src/ (each file that has it).

  python3 scripts/readme_tables.py runs/thesis/table1/results.md runs/thesis/table3/results.md
  python3 scripts/readme_tables.py --partial runs/evidence/bifurcation/results.md

Exits non-zero, changing nothing, when a title is in none of those files
(with --partial: skips those titles and names them on stderr).
"""
import glob, os, re, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
paths = [os.path.join(root, "README.md")] + sorted(
    glob.glob(os.path.join(root, "docs", "src", "**", "*.md"), recursive=True)
)
texts = {p: open(p).read() for p in paths}


def sections(text):
    """(title, block) for each `### title` block: heading, its lines, up to the end of its table."""
    out = []
    for m in re.finditer(r"(?m)^### (.+)\n(?:(?!#{1,6} ).*\n)*?(?:\|.*\n)+", text):
        out.append((m.group(1).strip(), m.group(0)))
    return out


args = sys.argv[1:]
partial = "--partial" in args
missing = []
for path in [a for a in args if a != "--partial"]:
    for title, block in sections(open(path).read()):
        # Images are named relative to the run folder: the guide shows its own copies.
        block = re.sub(r"(?m)^!\[.*\n\n?", "", block)
        found = False
        for p, text in texts.items():
            old = [b for t, b in sections(text) if t == title]
            if old:
                texts[p] = text.replace(old[0], block, 1)
                found = True
        if not found:
            missing.append(f"{path}: `### {title}`")
if missing and partial:
    print("skipped (not in README.md or docs/src): " + "; ".join(missing), file=sys.stderr)
elif missing:
    sys.exit("not in README.md or docs/src: " + "; ".join(missing))
for p, text in texts.items():
    with open(p, "w") as f:
        f.write(text)
