"""Replaces the block between <!-- NAME:start --> and <!-- NAME:end --> in
docs/benchmarks.md. As a command, with the table in a markdown file (its lines starting
with '|', after its 'Measured …' line if it has one):
    python3 bench/update_docs.py NAME FILE.md
Benchmark scripts in Python import `replace_block` to write a block of their own."""
import os
import re
import sys

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")


def replace_block(name, body):
    doc = open(DOC).read()
    # The block between the markers may be empty (a table not yet measured).
    pattern = re.compile(rf"<!-- {name}:start -->\n(?:.*?\n)?<!-- {name}:end -->", re.S)
    if not pattern.search(doc):
        sys.exit(f"markers for {name} not found in docs/benchmarks.md")
    doc = pattern.sub(lambda _: f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->", doc)
    open(DOC, "w").write(doc)
    print(f"updated the {name} table in docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    name, src = sys.argv[1], sys.argv[2]
    lines = open(src).read().splitlines()
    table = "\n".join(l for l in lines if l.startswith("|"))
    header = next((l for l in lines if l.startswith("Measured")), "")
    replace_block(name, (f"{header}\n\n" if header else "") + table)
