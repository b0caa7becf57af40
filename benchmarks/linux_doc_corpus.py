"""Build a large plain-English corpus from Debian's `linux-doc-6.12` package (the kernel's own
documentation sources, reStructuredText and plain text), for runs that must see their data once.

    apt-get install linux-doc-6.12
    python benchmarks/linux_doc_corpus.py --out linux_doc.txt

Markup is thinned, not parsed: directive and comment lines (`.. ...`), section underlines, table
borders and SPDX tags are dropped; prose, lists and literal blocks stay. Files are read in sorted
path order, so the output (and its sha256, printed) is the same on every machine with the same
package version. The last 10% of the output, wavegpt's held-out split, is then whole documents
from the end of that order.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path("/usr/share/doc/linux-doc-6.12/Documentation")
DROP = re.compile(r"^\s*(\.\. |SPDX-License-Identifier|:(orphan|Author|Copyright)\b)"  # directives, tags
                  r"|^\s*([=\-~^*+#`'\"_.:]{3,}|\+[-=+]+\+)\s*$")  # underlines, table borders


def clean(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if not DROP.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT, help=f"the documentation folder (default {ROOT})")
    p.add_argument("--out", type=Path, required=True, help="the text file to write (must not exist)")
    args = p.parse_args(argv)
    files = sorted(f for f in args.root.rglob("*") if f.name.endswith((".rst.gz", ".txt.gz", ".rst", ".txt")))
    if not files:
        print(f"error: no .rst or .txt documentation under {args.root}; install linux-doc-6.12 first.",
              file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"error: {args.out} exists; name a new file.", file=sys.stderr)
        return 2
    parts = []
    for f in files:
        raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        text = clean(raw.decode("utf-8", errors="replace"))
        if text:
            parts.append(text)
    body = "\n\n".join(parts) + "\n"
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(args.out)
    print(f"{args.out}: {len(files):,} files, {len(body):,} characters, "
          f"sha256 {hashlib.sha256(body.encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
