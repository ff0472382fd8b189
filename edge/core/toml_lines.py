"""Where a key is in a TOML text: the line a config error points at (tomllib reports no positions)."""

from __future__ import annotations

import re
from pathlib import Path

from edge.core.errors import field_path


class KeyLines:
    """Maps key paths such as ('printers', 1, 'port') to line numbers of the TOML text.

    tomllib does not report positions, so this follows table headers and `key =` lines. Inline
    tables and dotted keys are only found by their first key; then the nearest table line is used.
    """

    HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]+\")\s*=")

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        counts: dict[tuple, int] = {}
        table: tuple = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self.HEADER.match(line)
            if header:
                parts = tuple(p.strip('"') for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counts.get(parts, 0)
                    counts[parts] = index + 1
                    table = parts + (index,)
                else:
                    table = parts
                self.lines.setdefault(table, number)
                continue
            key = self.KEY.match(line)
            if key:
                self.lines.setdefault(table + (key.group(1).strip('"'),), number)

    def find(self, loc) -> int | None:
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def describe(self, path: Path, loc, message: str) -> str:
        # discriminated unions put the tag in the loc ('printers', 0, 'network', 'port'): drop it
        loc = tuple(part for i, part in enumerate(loc) if not (i == 2 and isinstance(loc[1], int)
                                                               and isinstance(part, str) and len(loc) > 3))
        line = self.find(loc)
        where = f"{path}:{line}" if line else f"{path}"
        return f"{where}: {field_path(loc) or '(top level)'}: {message}"
