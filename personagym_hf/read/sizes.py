"""How much reading holds and reads at a time: `ReadSizes`. They change memory and speed, never a record read."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class ReadSizes:
    """Buffer and cut sizes of reading a store, in bytes. Any positive values read the same records (tests read
    with tiny ones to cross every boundary); the defaults were measured (see each)."""

    plan_block: int = 8 << 20  # read at a time while counting a file's lines: the only memory planning takes
    range_buffer: int = 1 << 20  # read buffer of a JSON Lines range (its lines are parsed one at a time)
    scan_block: int = 1 << 20  # of an array scanned at a time: ~10 MiB of numpy temporaries, and faster than 8 MiB
    whole_file_limit: int = 64 << 20  # a `.json` file over this is read a piece at a time (it can only be an array)
    piece_bytes: int = 16 << 20  # those pieces, outside an export (an export cuts by `RunOptions.chunk_bytes`)
    grown_block: int = 1 << 20  # read at a time from a `.json` file that grew since its size was taken

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name == "whole_file_limit" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"ReadSizes.{field.name} must be an integer of at least {least}, got {value!r}")


READ_SIZES = ReadSizes()
