"""The engine that applies the tables of `mappings.py`, in both directions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from videollama.checkpoint.mappings import Row

_SLOT_PATTERNS = {"l": r"(?P<l>\d+)", "p": r"(?P<p>.+)"}


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, group in _SLOT_PATTERNS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern + r"\Z")


@dataclass(frozen=True)
class CompiledRow:
    official: str
    ours: str | None
    official_re: re.Pattern[str]
    ours_re: re.Pattern[str] | None


@cache
def _compile(rows: tuple[Row, ...]) -> tuple[CompiledRow, ...]:
    return tuple(
        CompiledRow(o, u, _template_regex(o), _template_regex(u) if u is not None else None) for o, u in rows
    )


class KeyMap:
    """Maps official keys to ours (first matching row wins) and back."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = _compile(tuple(rows))

    def to_ours(self, key: str, allow_catch_all: bool = True) -> tuple[bool, str | None]:
        """(matched, our key or None when the row says 'ignore'); `allow_catch_all=False` skips a bare '{p}' row."""
        for row in self.rows:
            if not allow_catch_all and row.official == "{p}":
                continue
            m = row.official_re.match(key)
            if m:
                return True, None if row.ours is None else row.ours.format(**m.groupdict())
        return False, None

    def to_official(self, key: str) -> str | None:
        """Our key -> official key, or None when no row produces it."""
        for row in self.rows:
            if row.ours_re is None:
                continue
            m = row.ours_re.match(key)
            if m:
                official = row.official.format(**m.groupdict())
                # Round-trip check keeps overlapping generic rows (e.g. EVA's '{p}') honest.
                if self.to_ours(official) == (True, key):
                    return official
        return None
