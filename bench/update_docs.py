"""Replaces the table between <!-- NAME:start --> and <!-- NAME:end --> in
docs/benchmarks.md with the table in a markdown file (its lines starting with '|').
Usage: python3 bench/update_docs.py NAME FILE.md"""
import re
import sys

name, src = sys.argv[1], sys.argv[2]
table = "\n".join(l for l in open(src).read().splitlines() if l.startswith("|"))
header = next((l for l in open(src).read().splitlines() if l.startswith("Measured")), "")
doc_path = "docs/benchmarks.md"
doc = open(doc_path).read()
pattern = re.compile(rf"<!-- {name}:start -->\n.*?\n<!-- {name}:end -->", re.S)
if not pattern.search(doc):
    sys.exit(f"markers for {name} not found in {doc_path}")
body = (f"{header}\n\n" if header else "") + table
doc = pattern.sub(lambda _: f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->", doc)
open(doc_path, "w").write(doc)
print(f"updated the {name} table in {doc_path}", file=sys.stderr)
