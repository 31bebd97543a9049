"""The export's Parquet shards read by `datasets`, pandas, polars and duckdb: each reader's line is docs/loading.md's
own (run here as written), and gives the `Json` columns back as JSON text or objects that the reader can work with."""

import json
import re
from pathlib import Path

import datasets
import polars as pl
import pytest
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.config import parse_config

LOADING = Path(__file__).parents[2] / "docs" / "loading.md"


def reader_lines() -> dict[str, str]:
    """docs/loading.md: the reader snippet's import line, and each reader's line by its comment's first word."""
    text = LOADING.read_text(encoding="utf-8")
    block = re.search(r"reader takes them in one line:\n\n```python\n(.*?)```", text, flags=re.S)
    assert block, "docs/loading.md: the reader snippet under 'The Parquet shards' is missing"
    lines = [line for line in block[1].splitlines() if line.strip()]
    readers = {line.split("# ")[1].split(":")[0]: line for line in lines if "  # " in line}
    return {"import": lines[0], **readers}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    records = [make_interaction(n, persona=f"p{n % 3}") for n in range(6)]
    records[1]["persona_features"] = {"role": "student", "languages": ["fr", "\u65e5\u672c\u8a9e"]}
    store = write_files(tmp_path_factory.mktemp("readers") / "s", records)
    out = tmp_path_factory.mktemp("readers_out")
    export_store(store, out, parse_config({}), TrainingDataCollector().interaction_to_training_sample, split=False)
    rows = [json.loads(line) for line in (out / "train_samples.jsonl").read_text(encoding="utf-8").splitlines()]
    return out / "hf_dataset", rows


def run_documented_line(reader: str, shard: Path) -> dict:
    lines = reader_lines()
    scope: dict = {}
    exec(lines["import"], scope)
    scope["shard"] = shard.as_posix()
    exec(lines[reader], scope)
    return scope


def shard_of(folder: Path) -> Path:
    return folder / "data" / "full" / "train-00000-of-00001.parquet"


def test_pandas_reads_json_columns_as_json_text(exported):
    folder, rows = exported
    scope = run_documented_line("pandas", shard_of(folder))
    assert scope["features"] == rows[0]["persona_features"]
    frame = scope["pd"].read_parquet(shard_of(folder))
    assert [json.loads(text) for text in frame["metadata"]] == [row["metadata"] for row in rows]


def test_polars_reads_json_columns_as_strings_after_the_documented_line(exported, tmp_path):
    folder, rows = exported
    raw = pl.read_parquet(shard_of(folder))
    assert str(raw.schema["persona_features"]).startswith("Extension('arrow.json'")
    with pytest.raises(pl.exceptions.SchemaError, match="expected `String`, got `ext\\[arrow.json\\]`"):
        raw.select(pl.col("persona_features").str.len_chars())  # why the documented line is needed
    frame = run_documented_line("polars", shard_of(folder))["frame"]
    assert frame.schema["persona_features"] == pl.String and frame.schema["metadata"] == pl.String
    assert [json.loads(text) for text in frame["persona_features"]] == [row["persona_features"] for row in rows]
    assert frame.select(pl.col("persona_features").str.contains("student")).to_series().sum() == 1
    assert frame.select(pl.col("metadata").cast(pl.Binary)).height == 6
    frame.select("sample_id", "persona_features", "metadata").write_csv(tmp_path / "rows.csv")
    assert (tmp_path / "rows.csv").read_text(encoding="utf-8").count("\u65e5\u672c\u8a9e") == 1


def test_duckdb_reads_json_columns_as_its_json_type(exported):
    folder, rows = exported
    scope = run_documented_line("duckdb", shard_of(folder))
    assert scope["roles"] == [(row["persona_features"]["role"],) for row in rows]
    types = scope["duckdb"].sql(f"SELECT typeof(persona_features), typeof(metadata) FROM '{shard_of(folder)}' LIMIT 1")
    assert types.fetchall() == [("JSON", "JSON")]


def test_datasets_gives_json_features_from_the_folder_a_shard_or_a_stream(exported, tmp_path):
    folder, rows = exported
    loaded = [
        datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "a"))["train"],
        datasets.load_dataset("parquet", data_files=str(shard_of(folder)), cache_dir=str(tmp_path / "b"))["train"],
        datasets.Dataset.from_parquet(str(shard_of(folder)), cache_dir=str(tmp_path / "c")),
    ]
    for dataset in loaded:
        assert dataset.features["persona_features"] == datasets.Json() == dataset.features["metadata"]
        assert dataset.to_list() == rows
    streamed = datasets.load_dataset(str(folder), streaming=True)["train"]
    assert streamed.features["persona_features"] == datasets.Json() and list(streamed) == rows
