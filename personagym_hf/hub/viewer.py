"""Viewer-ready before the push: the staged files checked against the limits of the Hub's dataset viewer.

`datasets.load_dataset` accepts folders that the viewer rejects (row groups too big to read, cells too big to
preview, split or config names it does not allow, YAML it cannot parse), and users find out after publishing.
`check_staged` looks at exactly what a push would upload (the folder's files and the re-rendered card) and returns
one line per problem. The limits are the defaults of the viewer's own code (huggingface/dataset-viewer, commit
f62009e0, 2026-08-20); names and YAML are checked with `datasets`' own validation; and every config is loaded from
the staged files with `datasets.load_dataset`, its row counts compared with the card's `dataset_info`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..wording import plural

logger = logging.getLogger(__name__)

# libcommon/config.py ROWS_INDEX_MAX_ARROW_DATA_IN_MEMORY: the rows index reads a whole row group into memory
# (the viewer's docs recommend row groups of 100-300 MB, uncompressed)
MAX_ROW_GROUP_BYTES = 300_000_000
FIRST_ROWS = 100  # libcommon/constants.py MAX_NUM_ROWS_PER_PAGE: the rows of the preview
FIRST_ROWS_MAX_BYTES = 1_000_000  # worker/config.py FIRST_ROWS_MAX_BYTES: the whole preview's JSON
MAX_COLUMNS = 1_000  # worker/config.py FIRST_ROWS_COLUMNS_MAX_NUMBER
MAX_COLUMN_NAME_LENGTH = 500  # libcommon/constants.py MAX_COLUMN_NAME_LENGTH
MAX_SPLITS = 30  # worker/config.py SPLIT_NAMES_MAX_NUMBER, per config
MAX_CONFIGS = 4_000  # worker/config.py CONFIG_NAMES_MAX_NUMBER


def _first_line(error: BaseException) -> str:
    """The error's first paragraph on one line (datasets' YAML errors go on with pages of examples)."""
    paragraph = str(error).strip().split("\n\n")[0].split("Examples of")[0]
    return " ".join(paragraph.split()) or error.__class__.__name__


def _splits_of(data_files: Any) -> dict[str, list[str]]:
    """A config's `data_files` (a pattern, a list of them, or a list of {split, path}) as {split: patterns}."""
    if isinstance(data_files, str):
        return {"train": [data_files]}
    splits: dict[str, list[str]] = {}
    for item in data_files or []:
        if isinstance(item, str):
            splits.setdefault("train", []).append(item)
        else:
            paths = item["path"]
            splits.setdefault(item["split"], []).extend([paths] if isinstance(paths, str) else paths)
    return splits


def _stage(files: dict[str, Path], folder: Path) -> None:
    """The staged files as one folder (links, not copies), laid out as in the repo."""
    for path, source in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(source).resolve(), target)


def check_yaml(card_data, folder: Path) -> tuple[list[str], dict[str, dict[str, list[str]]], dict[str, Any]]:
    """Problems of the card's `configs` and `dataset_info`, and ({config: {split: files}}, {config: DatasetInfo})."""
    import datasets
    from datasets.data_files import DataFilesDict
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    problems: list[str] = []
    for entry in card_data.get("configs") or []:  # datasets' own rule for split names, with its own message
        for item in (entry.get("data_files") if isinstance(entry, dict) else None) or []:
            if isinstance(item, dict) and isinstance(item.get("split"), str):
                try:
                    datasets.NamedSplit(item["split"])
                except ValueError as error:
                    problems.append(f"README.md: config {entry.get('config_name')}: {_first_line(error)}")
    if problems:
        return problems, {}, {}
    try:
        metadata = MetadataConfigs.from_dataset_card_data(card_data)
    except ValueError as error:
        return [f"README.md: configs: {_first_line(error)}"], {}, {}
    try:
        infos = DatasetInfosDict.from_dataset_card_data(card_data)
    except (ValueError, TypeError, KeyError) as error:
        problems.append(f"README.md: dataset_info: {_first_line(error)}")
        infos = DatasetInfosDict()
    configs: dict[str, dict[str, list[str]]] = {}
    incomplete: set[str] = set()
    for name, params in metadata.items():
        splits = _splits_of(params.get("data_files"))
        if not splits:
            problems.append(f"README.md: config {name}: no data_files")
            continue
        configs[name] = {}
        for split, patterns in splits.items():
            try:
                found = list(DataFilesDict.from_patterns({split: patterns}, base_path=str(folder))[split])
            except FileNotFoundError:
                found = []
            if found:
                configs[name][split] = found
            else:
                problems.append(f"README.md: config {name} split {split}: no file matches {', '.join(patterns)}")
                incomplete.add(name)
    for name, info in infos.items():
        if name not in metadata:
            problems.append(f"README.md: dataset_info names config {name}, which configs lacks")
        elif name in configs and name not in incomplete and info.splits and set(info.splits) != set(configs[name]):
            problems.append(
                f"README.md: config {name}: dataset_info has splits {sorted(info.splits)}, "
                f"data_files {sorted(configs[name])}"
            )
    return problems, configs, dict(infos)


def check_names(configs: dict[str, dict[str, list[str]]]) -> list[str]:
    """Config names the viewer takes, and no more configs and splits than it shows."""
    import datasets

    problems = []
    if len(configs) > MAX_CONFIGS:
        problems.append(f"{plural(len(configs), 'config')}: the viewer shows at most {MAX_CONFIGS:,}")
    for name, splits in configs.items():
        try:
            datasets.BuilderConfig(name=name)
        except ValueError as error:
            problems.append(f"config name {name!r}: {_first_line(error)}")
        if len(splits) > MAX_SPLITS:  # (split names are checked with the YAML: datasets' own rule)
            problems.append(
                f"config {name}: {plural(len(splits), 'split')}; the viewer takes at most {MAX_SPLITS} "
                "(use configs for what is not train/validation/test)"
            )
    return problems


def check_parquet(files: dict[str, Path], max_row_group_bytes: int = MAX_ROW_GROUP_BYTES) -> list[str]:
    """Row groups the viewer can read whole (up to `max_row_group_bytes` uncompressed), and columns it can show."""
    import pyarrow.parquet as pq

    problems = []
    for path, source in sorted(files.items()):
        if not path.endswith(".parquet"):
            continue
        try:
            metadata = pq.ParquetFile(source).metadata
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            problems.append(f"{path}: not a readable Parquet file ({_first_line(error)})")
            continue
        for index in range(metadata.num_row_groups):
            size = metadata.row_group(index).total_byte_size
            if size > max_row_group_bytes:
                problems.append(
                    f"{path}: row group {index} holds {size:,} bytes uncompressed; the viewer reads at most "
                    f"{max_row_group_bytes:,} at once (write smaller row groups)"
                )
        names = metadata.schema.to_arrow_schema().names
        if len(names) > MAX_COLUMNS:
            problems.append(f"{path}: {len(names):,} columns; the viewer shows at most {MAX_COLUMNS:,}")
        problems += [
            f"{path}: a column name of {len(name):,} characters; the viewer takes at most {MAX_COLUMN_NAME_LENGTH}"
            for name in names
            if len(name) > MAX_COLUMN_NAME_LENGTH
        ]
    return problems


def check_first_rows(configs: dict[str, dict[str, list[str]]], folder: Path) -> list[str]:
    """Cells of the first rows of each split that alone are bigger than the viewer's whole preview."""
    import orjson
    import pyarrow.parquet as pq

    problems = []
    for name, splits in configs.items():
        for split, paths in splits.items():
            parquet = sorted(p for p in paths if p.endswith(".parquet"))
            if not parquet:
                continue
            first = pq.ParquetFile(parquet[0])
            batch = next(first.iter_batches(batch_size=FIRST_ROWS), None)
            if batch is None:
                continue
            shown = Path(os.path.relpath(parquet[0], folder)).as_posix()
            for column, values in zip(batch.schema.names, batch.columns):
                for row, value in enumerate(values.to_pylist()):
                    size = len(orjson.dumps(value, default=str))
                    if size > FIRST_ROWS_MAX_BYTES:
                        problems.append(
                            f"{shown}, row {row}, {column}: a cell of {size:,} bytes; the viewer's preview of the "
                            f"first {FIRST_ROWS} rows holds {FIRST_ROWS_MAX_BYTES:,} bytes in all"
                        )
    return problems


def check_load(configs: dict[str, dict[str, list[str]]], infos: dict[str, Any], folder: Path) -> list[str]:
    """Every config loaded from the staged files as `datasets` (and the viewer) would, rows as the card says."""
    import datasets

    problems = []
    with tempfile.TemporaryDirectory(prefix="personagym_viewer_cache_") as cache:
        for name in configs:
            try:
                # no_checks: the row counts are compared below, with a message that says which
                loaded = datasets.load_dataset(str(folder), name, cache_dir=cache, verification_mode="no_checks")
            except Exception as error:  # noqa: BLE001 — whatever makes the load fail is the problem to report
                problems.append(f"config {name}: load_dataset fails: {error.__class__.__name__}: {_first_line(error)}")
                continue
            info = infos.get(name)
            for split, expected in ((info.splits or {}) if info else {}).items():
                found = loaded[split].num_rows if split in loaded else 0
                if found != expected.num_examples:
                    problems.append(
                        f"config {name} split {split}: the card says {plural(expected.num_examples, 'row')}, "
                        f"the files hold {found:,}"
                    )
    return problems


def check_staged(files: dict[str, Path], *, load: bool = True) -> list[str]:
    """Every problem the viewer would have with these files ({path in repo: local file}, README.md included)."""
    from huggingface_hub import DatasetCard

    with tempfile.TemporaryDirectory(prefix="personagym_viewer_") as staged:
        folder = Path(staged)
        _stage(files, folder)
        card_data = DatasetCard.load(folder / "README.md").data
        problems, configs, infos = check_yaml(card_data, folder)
        problems += check_names(configs)
        problems += check_parquet(files)
        problems += check_first_rows(configs, folder)
        if load and not problems:  # a load only adds noise to problems already found
            problems += check_load(configs, infos, folder)
    return problems
