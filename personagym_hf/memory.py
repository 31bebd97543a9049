"""What an export gives back to the system of the memory it freed, on glibc (elsewhere these do nothing).

Python takes a block of more than 512 bytes from the C library's `malloc`, and glibc keeps much of what is freed:
- `release_freed_memory`, the command line's choice for its own process: glibc's thresholds fixed, so that the
  blocks a big record leaves are given back instead of kept through every later stage;
- `trim_heap`, between an export's stages: the free pages inside the heap given back at once.
Figures: docs/performance.md ("Big records", "The export against its component floor").
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 4 << 20  # an allocation of this or more is a mapping of its own, unmapped when freed
TRIM_THRESHOLD = 8 << 20  # free memory at the top of the heap past this goes back to the system
_MALLOPT = {"mmap_threshold": (-3, MMAP_THRESHOLD), "trim_threshold": (-1, TRIM_THRESHOLD)}  # glibc's M_* numbers


def _glibc():
    """The C library's functions when it is glibc, else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):  # not glibc (macOS, musl): no such name
        return None
    import ctypes

    return ctypes.CDLL(None)


def release_freed_memory() -> bool:
    """Fixed thresholds for glibc's malloc in an export's process (and its forked workers): whether they were set.

    By default glibc raises both as big blocks are freed: once a 20 MB record's text has been freed, later blocks of
    that size come from the heap, and up to twice that stays in the process when freed. An export then holds the
    peaks of its earlier stages besides the current one: a 20 MB record cost 31 MB more at the end of an export.
    Fixed, a block of 4 MiB or more is unmapped when freed, and the heap's free top past 8 MiB is returned. Not
    lower: with a trim threshold of 1 MiB or less, each chunk's memory is returned and faulted in again (twice the
    page faults, ~8% more CPU at 20k). Left alone when the user set either (`MALLOC_MMAP_THRESHOLD_`,
    `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES`), and on any other C library. A choice of the command line's own
    process (`cli.export`), as `cli.common.use_jemalloc` is: a library does not change its caller's allocator."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(f"MALLOC_{name.upper()}_" in os.environ or f"glibc.malloc.{name}" in tunables for name in _MALLOPT):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(number, value) == 1 for number, value in _MALLOPT.values())


def trim_heap() -> bool:
    """Give the heap's free pages back to the system now (glibc's `malloc_trim`): whether any were. What the
    export's pass freed stays in the heap wherever a live block sits above it; trimmed before the export's end
    (the audit's comparison, the card's imports), the peak there was 14 MB lower at 20k and 31 MB at 100k (medians
    of alternating runs). It changes no setting, so a library may call it: 11-20 ms at 100k."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
