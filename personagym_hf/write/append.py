"""The export already in an output folder, read for an append: what it was made with (its manifest, checked against
this run by `manifest.check_append`) and its rows, each output from its own file — JSON rows from its JSONL, Parquet
rows from its shards, statistics from the manifest's exact state — so that an append that adds nothing writes the same
bytes as the export it read. The exporter carries them over (`Exporter`); this module only reads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..config import ExportConfig
from ..request import Layout, Outputs
from .manifest import AppendError, Earlier, check_append, read_earlier


class EarlierExport:
    """The export in `folder` and the layout an append into it keeps."""

    def __init__(self, folder: Path, manifest: Earlier, layout: Layout):
        self.folder, self.manifest, self.layout = folder, manifest, layout

    @classmethod
    def read(
        cls, folder: Path, settings: ExportConfig, outputs: Outputs, collector: str | None, shown: Path | None = None
    ) -> "EarlierExport | None":
        """The export in `folder` (None: there is none), if this run can append to it; else `AppendError`. `shown`:
        the folder's name in messages (the path the user gave)."""
        manifest = read_earlier(folder)
        if manifest is None:
            return None
        layout = check_append(shown or folder, manifest, settings, outputs.split, outputs.hf_dataset, collector)
        return cls(folder, manifest, layout)

    @property
    def split_files(self) -> dict[str, str]:
        """split -> its JSON file's name (its JSONL is beside it)."""
        return self.manifest.split_files

    @property
    def statistics_state(self) -> dict[str, Any] | None:
        return self.manifest.statistics_state

    def rows(self) -> Iterator[tuple[dict, str]]:
        """(row, split) of every earlier row, split by split, in file order."""
        for split, file_name in self.split_files.items():
            for row in read_rows(self.folder / file_name):
                yield row, split

    def tables(self, config: str, split: str, schema) -> Iterator[Any]:
        """The Arrow tables of one config's split, a row group at a time, from the earlier shards (checked against
        `schema`, the columns this version writes)."""
        import pyarrow.parquet as pq

        data = self.folder / "hf_dataset" / "data" / config
        for shard in sorted(data.glob(f"{split}-*-of-*.parquet")):
            parquet = pq.ParquetFile(shard)
            if not parquet.schema_arrow.remove_metadata().equals(schema.remove_metadata()):
                raise AppendError(
                    f"{shard}: cannot append: its columns are not those this version writes for {config!r}; rebuild "
                    "with --no-append"
                )
            for index in range(parquet.num_row_groups):
                yield without_valid_bitmaps(parquet.read_row_group(index)).replace_schema_metadata(schema.metadata)


def read_rows(path: Path) -> Iterator[dict]:
    """Rows of an earlier export: its JSONL, line by line (or its JSON array when no JSONL is beside it)."""
    jsonl = path.with_suffix(".jsonl")
    if jsonl.exists():
        with jsonl.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as e:
                        raise ValueError(f"{jsonl}, line {number}: cannot append to a damaged export ({e})") from None
    elif path.exists():
        from ..read.store import BadRecord, iter_file

        for record in iter_file(path):
            if isinstance(record, BadRecord):
                raise ValueError(f"{record.describe()}: cannot append to a damaged export")
            yield record.data


def without_valid_bitmaps(table):
    """`table` as a fresh export builds it: Parquet readers give some nested columns validity bitmaps with no null
    in them, which would change the card's `num_bytes`. An Arrow IPC round trip drops them."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


def export_layout(outputs: Outputs, earlier: EarlierExport | None, stamp: str | None) -> Layout:
    """The layout of this run's files: an append's is the earlier export's; else the one asked for (`first` where
    it asks for none). A version beside the current export (`stamp`) has no `hf_dataset/` of its own: that folder is
    the current export's."""
    if earlier is not None:
        layout = earlier.layout
    else:
        first = outputs.first
        layout = Layout(
            first.split if outputs.split is None else outputs.split,
            first.hf_dataset if outputs.hf_dataset is None else outputs.hf_dataset,
        )
    return replace(layout, hf_dataset=layout.hf_dataset and stamp is None, stamp=stamp)


__all__ = ["EarlierExport", "export_layout", "read_rows", "without_valid_bitmaps"]
