"""An existing export read back row by row, for the audits: its `hf_dataset/` Parquet, or its JSONL files.

Parquet is read with pyarrow, a batch at a time and only the columns asked for, so memory holds one batch.
The `full` config has the fields the format flags allowed; the fields it lacks are taken from the configs that
always have them (`query_rewrite` for `persona_id` and `original_query`, `messages` for the turns), whose
rows are in the same order — checked by sample id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import orjson

from ..config import FILE_PREFIX

BATCH_ROWS = 1024
AUDIT_COLUMNS = (
    "sample_id",
    "persona_id",
    "original_query",
    "initial_query",
    "prompt_trajectory",
    "full_conversation",
)


class ExportReadError(ValueError):
    """The folder is not an export, or its files disagree; the message says where."""


def kind(folder: str | Path) -> str:
    """ "parquet" for an `hf_dataset/` folder, "jsonl" for an export folder; raises ExportReadError otherwise."""
    folder = Path(folder)
    if any((folder / "data").glob("*/*.parquet")) or any((folder / "data").glob("*.parquet")):
        return "parquet"
    if any((folder / f"{FILE_PREFIX[split]}_samples.jsonl").is_file() for split in FILE_PREFIX):
        return "jsonl"
    raise ExportReadError(
        f"{folder}: no export here (expected data/<config>/*.parquet of an hf_dataset/ folder, or "
        "train_samples.jsonl); "
        "pass --data with an export folder or its hf_dataset/"
    )


def _split_files(folder: Path, config: str) -> list[tuple[str, list[Path]]]:
    """(split, its shards) in split order, from the shards' names (`<split>-00000-of-00001.parquet`)."""
    base = folder / "data" / config
    if config == "full" and not base.is_dir():
        base = folder / "data"  # exports made before every config had a folder of its own
    splits: dict[str, list[Path]] = {}
    for path in sorted(base.glob("*.parquet")):
        splits.setdefault(path.name.split("-", 1)[0], []).append(path)
    order = {name: number for number, name in enumerate(FILE_PREFIX)}
    return sorted(splits.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def parquet_columns(folder: str | Path, config: str) -> list[str]:
    import pyarrow.parquet as pq

    files = _split_files(Path(folder), config)
    return pq.ParquetFile(files[0][1][0]).schema_arrow.names if files else []


def iter_parquet(folder: str | Path, config: str, columns: Iterable[str]) -> Iterator[tuple[dict, str]]:
    """Rows of one config (only `columns` it has), with their split, in the export's order."""
    import pyarrow.parquet as pq

    for split, paths in _split_files(Path(folder), config):
        for path in paths:
            shard = pq.ParquetFile(path)
            names = [name for name in columns if name in shard.schema_arrow.names]
            for batch in shard.iter_batches(batch_size=BATCH_ROWS, columns=names):
                for row in batch.to_pylist():
                    yield row, split


def iter_jsonl(folder: str | Path) -> Iterator[tuple[dict, str]]:
    """Rows of an export folder's `<split>_samples.jsonl` files, with their split."""
    folder = Path(folder)
    for split in FILE_PREFIX:  # every split's file a mode writes, in split order
        path = folder / f"{FILE_PREFIX[split]}_samples.jsonl"
        if not path.is_file():
            continue
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield orjson.loads(line), split
                    except orjson.JSONDecodeError as e:
                        raise ExportReadError(f"{path}, line {number}: invalid JSON ({e})") from None


def _joined(rows: Iterator[tuple[dict, str]], others: Iterator[tuple[dict, str]], config: str, folder: Path):
    """`rows` with the fields of the same sample's row of another config added."""
    for row, split in rows:
        other, other_split = next(others, (None, None))
        if other is None or (other["sample_id"], other_split) != (row.get("sample_id"), split):
            found = "nothing" if other is None else f"{other['sample_id']!r} ({other_split})"
            raise ExportReadError(
                f"{folder}: the {config} config does not follow the full config's rows (expected "
                f"{row.get('sample_id')!r} ({split}), found {found}); export again"
            )
        row.update((key, value) for key, value in other.items() if key != "sample_id")
        yield row, split


def iter_samples(folder: str | Path) -> Iterator[tuple[dict, str]]:
    """Each exported sample, with the fields the audits read (`AUDIT_COLUMNS`, where the export has them)."""
    folder = Path(folder)
    if kind(folder) == "jsonl":
        yield from iter_jsonl(folder)
        return
    have = set(parquet_columns(folder, "full"))
    rows = iter_parquet(folder, "full", AUDIT_COLUMNS)
    # Without include_persona no config has them (the flag removes persona data from every output).
    in_rewrite = set(parquet_columns(folder, "query_rewrite"))
    missing = [name for name in ("persona_id", "original_query") if name not in have and name in in_rewrite]
    if missing:
        styled = (
            ({key: row[key] for key in ("sample_id", *missing)}, split)
            for row, split in iter_parquet(folder, "query_rewrite", ("sample_id", "variant", *missing))
            if row["variant"] == "styled"
        )
        rows = _joined(rows, styled, "query_rewrite", folder)
    if not have & {"prompt_trajectory", "full_conversation"}:
        rows = _joined(rows, iter_parquet(folder, "messages", ("sample_id", "messages")), "messages", folder)
    yield from rows


__all__ = ["ExportReadError", "iter_jsonl", "iter_parquet", "iter_samples", "kind"]
