import json
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_interaction, write_files
from exporting import export_store

import personagym_hf
from personagym_hf import TrainingDataCollector
from personagym_hf.builder import PersonaGymBuilder, load_dataset
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.testing.synth import write_store

CONFIGS = ["full", "minimal", "messages", "last_turn", "query_rewrite", "rewrite"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(
        tmp_path_factory.mktemp("store") / "interactions", count=60, personas=30, seed=5, reply_chars=120
    )


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_store(store, out, parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return out


def jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_builder_used_directly_gives_the_exporters_rows_and_splits(store, exported, tmp_path):
    builder = PersonaGymBuilder(config_name="full", data_dir=str(store), cache_dir=str(tmp_path))
    builder.download_and_prepare()
    dataset = builder.as_dataset()
    assert isinstance(dataset, datasets.DatasetDict) and list(dataset) == ["train", "validation", "test"]
    for split, prefix in [("train", "train"), ("validation", "val"), ("test", "test")]:
        assert dataset[split].to_list() == jsonl(exported / f"{prefix}_samples.jsonl")


def test_features_come_from_training_sample(store, tmp_path):
    from personagym_hf.schema import FEATURE_SPECS, features

    dataset = load_dataset(store, "full", cache_dir=str(tmp_path))
    assert dataset["train"].features == features(FEATURE_SPECS)
    assert dataset["train"].features["persona_features"] == datasets.Json()


@pytest.mark.parametrize("name", CONFIGS)
def test_exported_folder_loads_as_is_and_equals_the_builder(store, exported, tmp_path, name):
    folder = exported / "hf_dataset"
    from_folder = datasets.load_dataset(str(folder), name, cache_dir=str(tmp_path / "a"))
    from_builder = load_dataset(store, name, cache_dir=str(tmp_path / "b"))
    assert list(from_folder) == list(from_builder) == ["train", "validation", "test"]
    for split in from_folder:
        assert from_folder[split].features == from_builder[split].features
        assert from_folder[split].to_list() == from_builder[split].to_list()
    streamed = datasets.load_dataset(str(folder), name, streaming=True)
    assert list(streamed["validation"]) == from_folder["validation"].to_list()


def test_default_config_of_the_folder_is_full_and_equals_the_jsonl(exported, tmp_path):
    dataset = datasets.load_dataset(str(exported / "hf_dataset"), cache_dir=str(tmp_path))
    assert dataset["train"].to_list() == jsonl(exported / "train_samples.jsonl")


def test_views_have_the_documented_rows(store, tmp_path):
    messages = load_dataset(store, "messages", cache_dir=str(tmp_path))["train"][0]
    assert list(messages) == ["sample_id", "persona_id", "persona_features", "messages"]
    assert messages["messages"][0]["role"] == "user" and messages["messages"][1]["role"] == "assistant"
    rewrite = load_dataset(store, "query_rewrite", cache_dir=str(tmp_path))["train"]
    noisy = [row for row in rewrite if row["variant"] != "styled"]
    assert noisy and all(row["noise_type"] != "none" and row["applied_strategies"] for row in noisy)
    styled = [row for row in rewrite if row["variant"] == "styled"]
    assert len(styled) == len(set(rewrite["sample_id"]))
    assert all(row["noise_type"] == "none" and row["applied_strategies"] == [] for row in styled)


def test_query_rewrite_rows_stay_in_their_samples_split(store, tmp_path):
    full = load_dataset(store, "full", cache_dir=str(tmp_path))
    rewrite = load_dataset(store, "query_rewrite", cache_dir=str(tmp_path))
    for split in full:
        assert set(rewrite[split]["sample_id"]) == set(full[split]["sample_id"])


def test_messages_config_is_what_trl_takes(store, tmp_path):
    row = load_dataset(store, "messages", cache_dir=str(tmp_path))["train"][0]
    assert all(set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant") for m in row["messages"])


def test_num_proc_two_gives_the_same_rows_in_the_same_order(store, tmp_path):
    one = load_dataset(store, "full", cache_dir=str(tmp_path / "one"))
    two = load_dataset(store, "full", cache_dir=str(tmp_path / "two"), num_proc=2)
    for split in one:
        assert two[split].to_list() == one[split].to_list()


def test_no_split_gives_a_single_train_split(store, tmp_path):
    dataset = load_dataset(store, "minimal", cache_dir=str(tmp_path), split=False)
    assert list(dataset) == ["train"] and dataset["train"].num_rows == 60


def test_format_flags_shape_full_and_a_changed_store_is_rebuilt(tmp_path):
    store = write_files(tmp_path / "s", [make_interaction(n) for n in range(3)])
    flags = {"include_persona": False, "include_trajectory": True, "include_distractor_versions": False}
    dataset = load_dataset(store, "full", cache_dir=str(tmp_path / "c"), format=flags, split=False)
    assert dataset["train"].column_names == ["sample_id", "initial_query", "prompt_trajectory", "num_turns"]
    write_files(store, [make_interaction(9)])
    assert load_dataset(store, "full", cache_dir=str(tmp_path / "c"), format=flags, split=False)["train"].num_rows == 4


def test_bad_records_follow_the_policy(tmp_path):
    store = write_files(tmp_path / "s", [make_interaction(1), make_interaction(2, messages=[])])
    assert load_dataset(store, "full", cache_dir=str(tmp_path / "c"), split=False)["train"].num_rows == 1
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as raised:
        load_dataset(store, "full", cache_dir=str(tmp_path / "d"), split=False, on_bad_records="error")
    assert (
        "interaction_persona_001_0002.json, interaction_id='interaction_persona_001_0002': 'messages' is empty"
        in str(raised.value.__cause__)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"config_name": "chat"}, "BuilderConfig 'chat' not found"),
        (
            {"config_name": "full", "ratios": {"train": 2}},
            "training_data.split.train: expected a number in [0, 1], got 2",
        ),
    ],
    ids=["unknown_config", "bad_ratio"],
)
def test_builder_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as raised:
        builder = PersonaGymBuilder(data_dir=str(tmp_path), cache_dir=str(tmp_path), **kwargs)
        builder.download_and_prepare()
    assert message in str(raised.value)


def test_big_stores_give_several_shards_that_still_load(store, tmp_path):
    options = RunOptions(max_shard_bytes=1, row_group_rows=10)
    convert = TrainingDataCollector().interaction_to_training_sample
    export_store(store, tmp_path / "out", parse_config({}), convert, options=options)
    shards = sorted(p.name for p in (tmp_path / "out" / "hf_dataset" / "data" / "full").glob("train-*.parquet"))
    assert len(shards) > 2 and shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    first = pq.ParquetFile(tmp_path / "out" / "hf_dataset" / "data" / "full" / shards[0]).metadata
    assert [first.row_group(i).num_rows for i in range(first.num_row_groups)] == [10]  # 1 byte: a group a shard
    loaded = datasets.load_dataset(str(tmp_path / "out" / "hf_dataset"), cache_dir=str(tmp_path / "c"))
    assert loaded["train"].to_list() == jsonl(tmp_path / "out" / "train_samples.jsonl")


def test_shards_read_directly_with_pyarrow_and_pandas(exported):
    path = next((exported / "hf_dataset" / "data" / "full").glob("train-*.parquet"))
    table = pq.read_table(path)
    assert b"huggingface" in table.schema.metadata
    frame = pd.read_parquet(path)
    assert list(frame.columns) == list(personagym_hf.TrainingSample.__dataclass_fields__)
    assert json.loads(frame["metadata"][0])["interaction_id"].startswith("interaction_persona_")


def test_no_split_export_gives_every_config_a_single_train_split(store, tmp_path):
    export_store(
        store, tmp_path / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample, split=False
    )
    for name in CONFIGS:
        loaded = datasets.load_dataset(str(tmp_path / "out" / "hf_dataset"), name, cache_dir=str(tmp_path / "c"))
        assert list(loaded) == ["train"]
    assert (
        loaded["train"].num_rows
        == load_dataset(store, "query_rewrite", cache_dir=str(tmp_path / "d"), split=False)["train"].num_rows
    )


def test_columnar_query_rewrite_agrees_with_the_row_view(store, tmp_path):
    from personagym_hf.read.store import iter_records
    from personagym_hf.transform.collect import interaction_to_sample
    from personagym_hf.transform.views import query_rewrite_rows

    samples = [interaction_to_sample(r.data).to_dict() for r in iter_records(store)]
    rows = [row for sample in samples for row in query_rewrite_rows(sample)]
    built = load_dataset(store, "query_rewrite", cache_dir=str(tmp_path), split=False)["train"].to_list()
    assert built == rows and len(rows) > len(samples)


def test_num_proc_drops_a_duplicate_in_another_shard_like_one_process(tmp_path):
    records = [make_interaction(n, persona=f"p{n % 3}") for n in range(6)]
    store = write_files(tmp_path / "s", records)
    (store / "zz_copy.json").write_text(json.dumps(records[0]), encoding="utf-8")  # the last shard's file
    # One id three times: first read in the first shard (a_copy sorts first), again in it and in the last one.
    for name in ("a_copy.json", "zz_copy_2.json"):
        (store / name).write_text(json.dumps({**records[1], "initial_query": name}), encoding="utf-8")
    one = load_dataset(store, "full", cache_dir=str(tmp_path / "one"), split=False)
    two = load_dataset(store, "full", cache_dir=str(tmp_path / "two"), split=False, num_proc=2)
    assert one["train"].num_rows == 6
    assert [row["initial_query"] for row in one["train"] if row["metadata"]["interaction_id"].endswith("1")] == [
        "a_copy.json"
    ]
    assert two["train"].to_list() == one["train"].to_list()


def _arrow_shards(cache_dir, split):
    return sorted(p.name for p in Path(cache_dir).rglob(f"*-{split}-*-of-*.arrow"))


def test_num_proc_two_writes_several_shards_per_split_with_the_rows_of_one_process(store, tmp_path, caplog):
    one = PersonaGymBuilder(config_name="full", data_dir=str(store), cache_dir=str(tmp_path / "one"))
    one.download_and_prepare()
    two = PersonaGymBuilder(config_name="full", data_dir=str(store), cache_dir=str(tmp_path / "two"))
    with caplog.at_level("WARNING", logger="datasets"):
        two.download_and_prepare(num_proc=2)
    assert not [r for r in caplog.records if "num_proc" in r.getMessage()]
    for split in ("train", "validation", "test"):
        shards = _arrow_shards(tmp_path / "two", split)
        assert len(shards) == 2 and shards[1].endswith(f"-{split}-00001-of-00002.arrow"), shards
        assert len(two.info.splits[split].shard_lengths) == 2
        assert two.as_dataset(split).to_list() == one.as_dataset(split).to_list()
    assert _arrow_shards(tmp_path / "one", "train") == []  # one process: one file, no shard pattern


def test_num_proc_reports_a_duplicate_in_another_shard_like_one_process(tmp_path):
    records = [make_interaction(n, persona=f"p{n % 3}") for n in range(6)]
    store = write_files(tmp_path / "s", records)
    (store / "zz_copy.json").write_text(json.dumps(records[0]), encoding="utf-8")
    messages = []
    for num_proc in (None, 2):
        with pytest.raises(datasets.exceptions.DatasetGenerationError) as raised:
            load_dataset(
                store, "full", cache_dir=str(tmp_path / f"c{num_proc}"), on_bad_records="error", num_proc=num_proc
            )
        messages.append(str(raised.value.__cause__))
    # In a worker the error comes back as the text of a remote traceback, with the error on a line of its own.
    error = "personagym_hf.transform.policy.BadInputError"
    in_worker = [line for line in messages[1].splitlines() if line.startswith(error)]
    assert in_worker == [f"personagym_hf.transform.policy.BadInputError: {messages[0]}"]
    assert messages[0] == (
        f"{store.as_posix()}/zz_copy.json, interaction_id='interaction_p0_0000': duplicate interaction_id (already "
        f"read from {store.as_posix()}/interaction_p0_0000.json); kept the first (fix the record, or rerun with "
        "--on-bad-records warn to skip bad records)"
    )


@pytest.fixture(scope="module")
def five_personas(tmp_path_factory):
    """100 interactions of 5 personas: with the default seed they all hash into train."""
    records = [make_interaction(n, persona=f"persona_{n % 5:05d}") for n in range(100)]
    return write_files(tmp_path_factory.mktemp("five") / "s", records)


@pytest.mark.parametrize("name", CONFIGS)
def test_an_empty_split_is_an_empty_dataset_with_the_configs_features(five_personas, tmp_path, name):
    from personagym_hf.schema import features
    from personagym_hf.transform.split import split_of
    from personagym_hf.transform.views import config_specs

    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    splits = {split_of({"persona_id": f"persona_{p:05d}"}, 42, ratios) for p in range(5)}
    assert splits == {"train"}  # each persona hashed on its own: all five in train
    hashed = {"split_assignment": "hashed"}
    dataset = load_dataset(five_personas, name, cache_dir=str(tmp_path), **hashed)
    assert list(dataset) == ["train", "validation", "test"]
    assert dataset["train"].num_rows >= 100
    for split in ("validation", "test"):
        assert dataset[split].num_rows == 0 and dataset[split].split == split
        assert dataset[split].features == features(config_specs(parse_config({}).format)[name])
    builder = PersonaGymBuilder(config_name=name, data_dir=str(five_personas), cache_dir=str(tmp_path / "b"), **hashed)
    builder.download_and_prepare()
    assert builder.as_dataset("validation").to_list() == []


def test_shards_are_written_as_datasets_writes_parquet_content_defined_with_a_page_index(exported):
    """The same CDC parameters and metadata key as `datasets`' own Parquet writer, so Xet dedupes our shards alike."""
    import datasets.config

    shards = sorted((exported / "hf_dataset" / "data").glob("*/*.parquet"))
    assert len(shards) == 3 * len(CONFIGS)
    for path in shards:
        metadata = pq.ParquetFile(path).metadata
        assert json.loads(metadata.metadata[b"content_defined_chunking"]) == datasets.config.DEFAULT_CDC_OPTIONS
        for group in range(metadata.num_row_groups):
            columns = [metadata.row_group(group).column(i) for i in range(metadata.num_columns)]
            assert all(column.has_offset_index for column in columns), path
        assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)][:-1] == [1000] * (
            metadata.num_row_groups - 1
        )


def test_duplicates_across_shards_leave_the_working_directory_alone(tmp_path, monkeypatch):
    """The pre-pass that finds them writes no part files, so there is nothing of its own to remove: a chunk result
    once took its missing folder for "." and removed the working directory's contents."""
    records = [make_interaction(n, persona=f"p{n % 3}") for n in range(6)]
    store = write_files(tmp_path / "s", records)
    (store / "zz_copy.json").write_text(json.dumps(records[0]), encoding="utf-8")  # a duplicate in the last shard
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("the user's", encoding="utf-8")
    monkeypatch.chdir(work)
    two = load_dataset(store, "full", cache_dir=str(tmp_path / "cache"), split=False, num_proc=2)
    assert two["train"].num_rows == 6
    assert [path.name for path in work.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_big_files_are_read_in_pieces_with_the_exports_rows(tmp_path, layout):
    from cut_stores import array_store, jsonl_store

    from personagym_hf.builder import store_chunks
    from personagym_hf.read.plan import Items, Range
    from personagym_hf.read.store import discover_paths

    store = (jsonl_store if layout == "jsonl" else array_store)(tmp_path / "s")
    chunks = store_chunks(discover_paths(store), 2, chunk_bytes=8192)
    assert len(chunks) > 20 and all(isinstance(chunk, Range if layout == "jsonl" else Items) for chunk in chunks)
    export_store(store, tmp_path / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    built = load_dataset(store, "full", cache_dir=str(tmp_path / "c"), num_proc=2, chunk_bytes=8192)
    for split, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = jsonl(tmp_path / "out" / f"{prefix}_samples.jsonl")
        assert [row["sample_id"] for row in built[split]] == [row["sample_id"] for row in rows]
    assert sum(built.num_rows.values()) == (450 if layout == "jsonl" else 449)  # the array store's last is cut short


@pytest.mark.parametrize("where", ["hf_dataset", "export", "export_without_hf_dataset"])
def test_an_export_given_as_the_store_is_an_error_naming_its_loader(store, tmp_path, where):
    """`load_dataset(export/hf_dataset)` gave empty splits (statistics.json read as a bad record, and so on): its name
    is `datasets.load_dataset`'s, so an export is an easy thing to pass."""
    out = tmp_path / "out"
    export_store(store, out, parse_config({}), TrainingDataCollector().interaction_to_training_sample,
                 hf_dataset=where != "export_without_hf_dataset")  # fmt: skip
    folder = out / "hf_dataset" if where == "hf_dataset" else out
    loader = {
        "hf_dataset": f"datasets.load_dataset({str(out / 'hf_dataset')!r})",
        "export": f"datasets.load_dataset({str(out / 'hf_dataset')!r})",
        "export_without_hf_dataset": "datasets.load_dataset('json', data_files={"
        + ", ".join(f"{split!r}: {str(out / f'{prefix}_samples.jsonl')!r}" for split, prefix in
                    [("train", "train"), ("validation", "val"), ("test", "test")])
        + "})",
    }[where]  # fmt: skip
    with pytest.raises(ValueError) as raised:
        load_dataset(folder, "full", cache_dir=str(tmp_path / "cache"))
    assert str(raised.value) == f"{folder} is an export, not an interaction store: load it with {loader}"
    if where != "export_without_hf_dataset":  # the loader named runs as written
        assert datasets.load_dataset(str(out / "hf_dataset"), "full", cache_dir=str(tmp_path / "c2"))["train"].num_rows


def test_a_store_whose_every_record_is_bad_is_an_error(tmp_path):
    """As it is to `export`: the builder gave empty splits and only logged each record."""
    from personagym_hf.run.job import AllRejected

    store = tmp_path / "bad"
    store.mkdir()
    (store / "a.json").write_text("{", encoding="utf-8")
    (store / "b.json").write_text("[1]", encoding="utf-8")
    for attempt in ("built", "cached"):  # the second finds the (empty) cache: still an error
        with pytest.raises(AllRejected) as raised:
            load_dataset(store, "full", cache_dir=str(tmp_path / "cache"))
        assert str(raised.value) == (
            f"all 2 records of {store} were rejected (the first: {store}/a.json, line 1, column 2: invalid JSON "
            f"(unexpected end of data)); run `personagym-hf validate --interactions {store}` to list them"
        ), attempt
