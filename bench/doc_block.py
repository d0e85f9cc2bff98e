"""One marker-delimited block of a generated docs page (docs/benchmarks.md), written in place."""

from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, text: str, begin: str, end: str) -> None:
    """Replace the block of `path` between `begin` and `end` with `text` (which carries the markers), or
    append it at the end when the page has none; everything else stays as it is."""
    old = path.read_text() if path.is_file() else ""
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        _, _, tail = rest.partition(end)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + ("\n\n" if old.strip() else "") + text + "\n"
    path.write_text(new)
