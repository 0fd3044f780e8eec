"""Generated blocks of README.md: the text between a start and an end marker, rewritten from data.

``bench/readme.py`` (the main benchmark's headline numbers) and ``quantize/readme.py`` (the int8
numbers) each own a block with its own markers; both replace and check it with this module.
Standard library only (no torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from detr_deploy import paths

__all__ = ["ReadmeBlock"]


@dataclass(frozen=True)
class ReadmeBlock:
    """A generated block: its markers, what it holds (for messages) and the command that rewrites it."""

    start_marker: str
    end_marker: str
    what: str  # "headline numbers"
    command: str  # "python -m detr_deploy.bench.readme"

    def replace(self, text: str, block: str) -> str:
        """``text`` with the part between the markers replaced by ``block``."""
        start, end = text.find(self.start_marker), text.find(self.end_marker)
        if start < 0 or end < start:
            raise ValueError(f"README.md lacks the markers {self.start_marker!r} ... {self.end_marker!r}")
        return text[: start + len(self.start_marker)] + "\n" + block + text[end:]

    def check_or_write(self, readme: Path, block: str, source: Path, check: bool) -> int:
        """Rewrite the block in ``readme`` with ``block`` (made from ``source``), or, with ``check``,
        return 1 when it is out of date."""
        current = readme.read_text()
        updated = self.replace(current, block)
        if check:
            if updated != current:
                print(f"README.md {self.what} are out of date: run {self.command}", file=sys.stderr)
                return 1
            print(f"README.md {self.what} match", paths.relative(source))
            return 0
        if updated != current:
            readme.write_text(updated)
            print("updated README.md from", paths.relative(source))
        else:
            print(f"README.md {self.what} already up to date")
        return 0
