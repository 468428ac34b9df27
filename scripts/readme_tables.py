"""Pastes `furcate experiment` tables into the README, so that no number in it
is typed: every `### <title>` section of the given results.md files replaces
the README's section of the same title (from its heading to the next heading
or prose paragraph after its table).

  python3 scripts/readme_tables.py runs/thesis/table1/results.md runs/thesis/table3/results.md

Exits non-zero, changing nothing, when a title is not in the README.
"""
import re, sys

readme_path = "README.md"
readme = open(readme_path).read()


def sections(text):
    """(title, block) for each `### title` block: heading, its lines, up to the end of its table."""
    out = []
    for m in re.finditer(r"(?m)^### (.+)\n(?:(?!#{1,6} ).*\n)*?(?:\|.*\n)+", text):
        out.append((m.group(1).strip(), m.group(0)))
    return out


missing = []
for path in sys.argv[1:]:
    for title, block in sections(open(path).read()):
        old = [b for t, b in sections(readme) if t == title]
        if not old:
            missing.append(f"{path}: `### {title}`")
            continue
        readme = readme.replace(old[0], block, 1)
if missing:
    sys.exit("not in README.md: " + "; ".join(missing))
open(readme_path, "w").write(readme)
