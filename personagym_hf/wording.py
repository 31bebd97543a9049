"""Counts in words for what the command line prints: `1 file`, `2 files`."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None, *, grouped: bool = False) -> str:
    """`count` and `noun`, or its plural (`many`, else `noun` + "s") unless `count` is 1; `grouped`: 1,234."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun if count == 1 else many or noun + 's'}"
