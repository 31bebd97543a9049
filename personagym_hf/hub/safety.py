"""The safety gate before a push, and the reviewed exceptions it honours.

The gate scans every string of the files a push would upload (`measure/secrets.py` says what a secret looks like)
and refuses the push while any finding is neither redacted (`export --redact-secrets`) nor accepted. Parquet columns
are prefiltered with Arrow's RE2 matcher on the leaf string arrays (lists and structs flattened, each value keeping
its row), so a big dataset is checked without turning it into Python objects; only the few strings that hold a rule's
keyword are searched in Python.

Reviewed exceptions live in a baseline, `hf_dataset/.personagym-secrets-baseline.json`, written by `personagym-hf
secrets --write-baseline` after the findings were listed for review. Each entry is a finding's kind, the salted
sha256 of its text (`secrets.digest`; never the text) and where it is: config, split, sample id and column of a
Parquet row, or the file of anything else. Beside the data, as a dot-file: a push never uploads it, it travels
with the folder (a push from another machine honours it) and a new export of the folder keeps it. A finding not in
the baseline, at its place, is refused by name; `--allow-secrets` turns the whole gate off.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..measure.secrets import (
    BASELINE_FILE,
    KINDS,
    PREFILTER,
    digest,
    find_secrets,
    may_hold_secrets,
    preview,
    split_prefilter,
)
from ..wording import plural

BASELINE_FORMAT = 1
LISTED = 20  # findings named in a refusal; the review command lists them all


class BaselineError(ValueError):
    """A baseline file that cannot be read (one line, with the fix)."""


@dataclass(frozen=True)
class Finding:
    """A string that looks like a secret: where (`file`, `where` for people, `place` for the baseline), its kind, and
    its text only as a preview and a digest."""

    file: str  # path in the folder
    where: str  # "row 3 (sample …), full_conversation[].content" or "line 12"
    kind: str
    preview: str
    digest: str
    place: tuple[tuple[str, str], ...]  # ((config, …), (split, …), (sample_id, …), (column, …)) or ((file, …),)

    def entry(self) -> dict[str, str]:
        """The finding as a baseline entry."""
        return {"kind": self.kind, "sha256": self.digest, **dict(self.place)}

    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.entry().items()))

    def describe(self) -> str:
        return f"{self.file}, {self.where}: {self.kind} ({self.preview}, sha256 {self.digest[:12]})"


def _findings(
    text: str, file: str, where: str, place: tuple[tuple[str, str], ...], rules: list[int] | None = None
) -> Iterator[Finding]:
    for secret in find_secrets(text, rules):
        yield Finding(file, where, secret.kind, preview(secret.text), digest(secret.text), place)


def _leaf_strings(array: pa.Array, rows: pa.Array, path: str):
    """(string array, row index of each value, column path) for every string leaf of `array`."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):  # also arrow.json (the Json columns), which is no pa.ExtensionType
        array, kind = array.storage, array.storage.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        yield array, rows, path
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        parents = pc.list_parent_indices(array)
        yield from _leaf_strings(pc.list_flatten(array), pc.take(rows, parents), path + "[]")
    elif pa.types.is_struct(kind):
        for index in range(kind.num_fields):
            yield from _leaf_strings(pc.struct_field(array, [index]), rows, f"{path}.{kind.field(index).name}")


def _shard_place(label: str) -> tuple[str, str]:
    """(config, split) of a shard `data/<config>/<split>-00000-of-00001.parquet`; ("", "") for another layout."""
    parts = label.split("/")
    if len(parts) == 3 and parts[0] == "data" and "-" in parts[2]:
        return parts[1], parts[2].split("-", 1)[0]
    return "", ""


def scan_parquet(path: Path, label: str) -> list[Finding]:
    found: list[Finding] = []
    config, split = _shard_place(label)
    parquet = pq.ParquetFile(path)
    offset = 0
    for batch in parquet.iter_batches(batch_size=4096):
        rows = pa.array(range(offset, offset + batch.num_rows), pa.int64())
        ids = None
        for name, column in zip(batch.schema.names, batch.columns):
            for strings, row_of, column_path in _leaf_strings(column, rows, name):
                mask = pc.fill_null(pc.match_substring_regex(strings, PREFILTER), False)
                if not pc.any(mask).as_py():
                    continue
                flagged = zip(pc.filter(strings, mask).to_pylist(), pc.filter(row_of, mask).to_pylist())
                for (value, row), rules in zip(flagged, split_prefilter(strings, mask)):
                    if ids is None:
                        ids = batch.column("sample_id").to_pylist() if "sample_id" in batch.schema.names else []
                    sample_id = str(ids[row - offset]) if ids else ""
                    where = f"row {row}" + (f" (sample {sample_id})" if sample_id else "") + f", {column_path}"
                    place = (("config", config), ("split", split), ("sample_id", sample_id), ("column", column_path))
                    if not sample_id:  # no sample id to name the row by: the file and the row
                        place = (("file", label), ("row", str(row)), ("column", column_path))
                    found.extend(_findings(value, label, where, place, rules))
        offset += batch.num_rows
    return found


def scan_text(path: Path, label: str) -> list[Finding]:
    """A text file (the card, statistics.json, provenance.json, a JSONL), line by line. A line's place is the file
    only: a card's lines move whenever it is rendered again."""
    found: list[Finding] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if may_hold_secrets(line):
                found.extend(_findings(line, label, f"line {number}", (("file", label),)))
    return found


def scan_files(files: dict[str, Path], threads: int | None = None) -> list[Finding]:
    """Every finding in `files` ({path in the repo: local file}, what a push uploads), in path order. Files are
    scanned on `threads` threads (default: one per core, at most 8), largest first: Arrow's Parquet decoding and RE2
    matching release the GIL (1.8x faster on 2 cores, measured), and a thread holds one batch of one file at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def scan(label: str) -> list[Finding]:
        path = files[label]
        return scan_parquet(path, label) if path.suffix == ".parquet" else scan_text(path, label)

    largest_first = sorted(files, key=lambda label: (-files[label].stat().st_size, label))
    with ThreadPoolExecutor(max(1, threads or min(os.cpu_count() or 1, 8))) as pool:
        by_file = dict(zip(largest_first, pool.map(scan, largest_first)))
    return [finding for label in sorted(files) for finding in by_file[label]]


def upload_files(folder: Path) -> dict[str, Path]:
    """The files of `folder` a push uploads: every file but dot-files and those under dot-folders."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def scan_folder(folder: Path) -> list[Finding]:
    """Every finding in the files a push of `folder` would upload."""
    return scan_files(upload_files(Path(folder)))


@dataclass
class Review:
    """The findings of a folder against its baseline (and what a review accepts besides)."""

    folder: Path
    findings: list[Finding]
    baseline: set[tuple] = field(default_factory=set)  # keys of the baseline's entries
    has_baseline: bool = False
    accepted_now: set[tuple] = field(default_factory=set)  # keys a review accepts on top of the baseline

    def accepted(self, finding: Finding) -> bool:
        key = finding.key()
        return key in self.baseline or key in self.accepted_now

    @property
    def unaccepted(self) -> list[Finding]:
        return [finding for finding in self.findings if not self.accepted(finding)]

    @property
    def baseline_path(self) -> Path:
        return self.folder / BASELINE_FILE

    def stale(self) -> int:
        """Baseline entries that match no finding any more (dropped when the baseline is written again)."""
        return len(self.baseline - {finding.key() for finding in self.findings})


def read_baseline(folder: Path) -> tuple[set[tuple], bool]:
    """The keys of the entries of `folder`'s baseline, and whether there is one."""
    path = Path(folder) / BASELINE_FILE
    fix = f"write it again with `{review_command(folder)} --write-baseline` after reviewing the findings"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return set(), False
    except (OSError, orjson.JSONDecodeError) as e:
        raise BaselineError(f"{path}: not a baseline of accepted findings ({e}); {fix}") from None
    entries = data.get("accepted") if isinstance(data, dict) and data.get("format") == BASELINE_FORMAT else None
    if not isinstance(entries, list):
        raise BaselineError(f"{path}: not a baseline of accepted findings (format {BASELINE_FORMAT}); {fix}")
    keys = set()
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS or not isinstance(entry.get("sha256"), str):
            raise BaselineError(f"{path}: an entry is not a finding (kind, sha256, place): {entry!r}; {fix}")
        keys.add(tuple(sorted((str(name), str(value)) for name, value in entry.items())))
    return keys, True


def review(folder: str | Path, files: dict[str, Path] | None = None) -> Review:
    """The findings of `folder` (or of `files`, the push's staged files) and its baseline."""
    folder = Path(folder)
    findings = scan_files(files) if files is not None else scan_folder(folder)
    baseline, has_baseline = read_baseline(folder)
    return Review(folder, findings, baseline, has_baseline)


def accept(result: Review, kinds: Iterable[str] = (), everything: bool = False) -> None:
    """Accept the findings of `kinds` (or all of them) on top of the baseline."""
    wanted = set(kinds)
    result.accepted_now |= {f.key() for f in result.findings if everything or f.kind in wanted}


def write_baseline(result: Review) -> Path:
    """Write the baseline: every finding now accepted (by the baseline or by the review), sorted, one per place.
    Entries of findings that are gone are dropped. No secret text: kind, digest, place."""
    from ..write.files import write_json_atomic

    entries = {f.key(): f.entry() for f in result.findings if result.accepted(f)}
    document = {
        "generator": "personagym-hf",
        "format": BASELINE_FORMAT,
        "digest": "sha256 of a fixed salt and the text (personagym_hf.measure.secrets.digest); no text is kept",
        "accepted": [entries[key] for key in sorted(entries)],
    }
    path = write_json_atomic(result.baseline_path, document)
    result.baseline, result.has_baseline, result.accepted_now = set(entries), True, set()
    return path


def review_command(folder: Path) -> str:
    return f"personagym-hf secrets --data {shlex.quote(str(folder))}"


def kinds_of(findings: Iterable[Finding]) -> str:
    counts = Counter(f.kind for f in findings)
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def refusal(result: Review) -> str:
    """Why a push is refused: the findings not accepted, by name, and the three ways on (each runs as printed)."""
    unaccepted = result.unaccepted
    accepted = len(result.findings) - len(unaccepted)
    places = "\n".join(f"  {finding.describe()}" for finding in unaccepted[:LISTED])
    more = f"\n  ... and {len(unaccepted) - LISTED} more" if len(unaccepted) > LISTED else ""
    baseline = f" ({accepted} more accepted by {BASELINE_FILE})" if accepted else ""
    command = review_command(result.folder)
    return (
        f"refusing to push: {plural(len(unaccepted), 'string')} in {result.folder} "
        f"{'looks' if len(unaccepted) == 1 else 'look'} like secrets ({kinds_of(unaccepted)}) and "
        f"{'is' if len(unaccepted) == 1 else 'are'} not accepted{baseline}:\n{places}{more}\n"
        f"to publish without them, export again with --redact-secrets; to review them: {command}; to accept them "
        f"once reviewed: {command} --accept-all --write-baseline; --allow-secrets pushes every finding, real ones too"
    )


def gate(folder: Path, files: dict[str, Path]) -> tuple[Review, str | None]:
    """The gate of a push of `folder` (`files`: what it uploads): the review, and why it is refused (None: not)."""
    result = review(folder, files)
    return result, refusal(result) if result.unaccepted else None
