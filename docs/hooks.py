"""MkDocs hook: the dated machine notes in ``benchmarks/results/`` become pages of the site.

They live next to the benchmark scripts, outside ``docs/``, so that a benchmark run updates its note where the
script is. The pages link them as ``../benchmarks/results/NAME.md`` (the path that works on GitHub); this hook adds
each note as a site file ``benchmarks/results/NAME.md`` and points those links at it, so ``mkdocs build --strict``
still checks every link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
LINK = re.compile(r"\]\((?:\.\./)+benchmarks/results/")


def on_files(files: Files, config: Any) -> Files:
    for note in sorted(RESULTS.glob("*.md")):
        files.append(File.generated(config, f"benchmarks/results/{note.name}", abs_src_path=str(note)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    depth = page.file.src_uri.count("/")  # pages in docs/api/ are one folder down
    return LINK.sub("](" + "../" * depth + "benchmarks/results/", markdown)
