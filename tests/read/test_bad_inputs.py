"""Inputs that once stopped a whole run: each is a rejected record (file and reason); the others are exported."""

import json
import os

import pytest
from conftest import make_interaction, write_files
from exporting import export_store, snapshot

from personagym_hf import InteractionStorage, TrainingDataCollector, TrainingDataExporter
from personagym_hf.builder import load_dataset
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.transform.policy import Rejections

CONVERT = TrainingDataCollector().interaction_to_training_sample


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def nested(levels: int) -> str:
    """JSON text of `levels` nested objects, as a file on disk holds it."""
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.fixture
def chunked() -> RunOptions:
    """Chunks of 3 files, so `num_proc=2` really runs workers."""
    return RunOptions(chunk_files=3)


@pytest.fixture
def deep_store(tmp_path):
    """Eight good files and one whose persona_features is nested 300 levels deep (valid JSON: orjson reads
    up to 1024 levels, but writes at most 254)."""
    store = write_files(tmp_path / "s", [make_interaction(n, persona=f"p{n % 4}") for n in range(8)])
    text = json.dumps(make_interaction(99, persona="p1"))
    text = text.replace('"persona_features": {', f'"persona_features": {{"deep": {nested(299)}, ', 1)
    (store / "interaction_persona_001_0004_deep.json").write_text(text, encoding="utf-8")
    return store


DEEP_REASON = "persona_features is nested deeper than 100 levels (at deep)"


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_record_nested_too_deep_is_rejected_and_the_rest_exported(deep_store, tmp_path, chunked, num_proc):
    out = tmp_path / "out"
    run = export_store(deep_store, out, parse_config({}), CONVERT, num_proc=num_proc, options=chunked)
    exported = [
        row["sample_id"] for name in ("train", "val", "test") for row in read_jsonl(out / f"{name}_samples.jsonl")
    ]
    assert sorted(exported) == sorted(f"sample_p{n % 4}_{n:04d}" for n in range(8))
    assert read_jsonl(out / "rejected.jsonl") == [
        {
            "file": f"{deep_store.as_posix()}/interaction_persona_001_0004_deep.json",
            "where": "",
            "interaction_id": "interaction_p1_0099",
            "reason": DEEP_REASON,
        }
    ]
    assert run.result.statistics["total_samples"] == 8
    assert (out / "hf_dataset" / "README.md").exists()


def test_a_record_nested_too_deep_gives_the_same_bytes_for_any_num_proc(deep_store, tmp_path, chunked):
    export_store(deep_store, tmp_path / "one", parse_config({}), CONVERT, options=chunked)
    export_store(deep_store, tmp_path / "two", parse_config({}), CONVERT, num_proc=2, options=chunked)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


@pytest.mark.parametrize("num_proc", [None, 2])
def test_the_builder_skips_a_record_nested_too_deep(deep_store, tmp_path, num_proc):
    dataset = load_dataset(deep_store, "full", cache_dir=str(tmp_path / "c"), split=False, num_proc=num_proc)
    assert dataset["train"].num_rows == 8
    assert "interaction_p1_0099" not in [row["interaction_id"] for row in dataset["train"]["metadata"]]


def test_the_seed_api_skips_a_record_nested_too_deep(deep_store, tmp_path):
    config = {"paths": {"training_data": {"output_dir": str(tmp_path / "out")}}}
    rejections = Rejections("skip")
    collector = TrainingDataCollector(config)
    samples = list(collector.iter_samples(InteractionStorage(deep_store).iter_records(), rejections))
    assert len(samples) == 8
    assert [(bad.record_id, bad.reason) for bad in rejections.bad] == [("interaction_p1_0099", DEEP_REASON)]
    files = TrainingDataExporter(config).export_samples(
        collector.collect_from_interactions(InteractionStorage(deep_store).load_all()), use_timestamp=False
    )
    assert len(json.loads(open(files["train"], encoding="utf-8").read())) == 8


def test_distinct_ids_that_look_alike_once_sanitised_are_all_exported(tmp_path, chunked):
    # `fzc4` and `interaction_fzc4` both became sample_fzc4; `interaction_fzc/7` became sample_fzc_7_1a378f68,
    # which is also what the (safe) id `interaction_fzc_7_1a378f68` became.
    ids = ["fzc4", "interaction_fzc4", "interaction_fzc/7", "interaction_fzc_7_1a378f68"]
    records = [make_interaction(n, persona=f"p{n}", interaction_id=id_) for n, id_ in enumerate(ids)]
    store = tmp_path / "s"
    store.mkdir()
    for number, record in enumerate(records):
        (store / f"{number}.json").write_text(json.dumps(record), encoding="utf-8")
    (store / "9_copy.json").write_text(json.dumps(records[2]), encoding="utf-8")  # an equal id: a duplicate
    for num_proc in (1, 2):
        out = tmp_path / f"out{num_proc}"
        run = export_store(store, out, parse_config({}), CONVERT, split=False, num_proc=num_proc, options=chunked)
        rows = read_jsonl(out / "train_samples.jsonl")
        assert [row["metadata"]["interaction_id"] for row in rows] == ids
        assert len({row["sample_id"] for row in rows}) == 4
        assert [(bad.source.rsplit("/", 1)[-1], bad.reason) for bad in run.rejections.bad] == [
            ("9_copy.json", f"duplicate interaction_id (already read from {store.as_posix()}/2.json); kept the first")
        ]


@pytest.fixture
def odd_store(tmp_path):
    """Six good files, and each odd kind of entry: a link loop, a broken link, a FIFO, a folder link cycle."""
    store = write_files(tmp_path / "s", [make_interaction(n, persona=f"p{n % 3}") for n in range(6)])
    (store / "loop_a.json").symlink_to("loop_b.json")
    (store / "loop_b.json").symlink_to("loop_a.json")
    (store / "dangling.json").symlink_to("nowhere.json")
    os.mkfifo(store / "fifo.json")
    (store / "up").symlink_to(".")
    return store


ODD_REPORT = [
    ("dangling.json", "broken symbolic link (its target nowhere.json does not exist)"),
    ("fifo.json", "not a regular file (a FIFO)"),
    ("loop_a.json", "symbolic link loop (it never reaches a file)"),
    ("loop_b.json", "symbolic link loop (it never reaches a file)"),
]


def _unblock_fifos_after(store, seconds):
    """If a run ever opens the FIFO for reading and waits, this opens it for writing after `seconds`, so the test
    fails on its assertions instead of hanging."""
    import threading

    def unblock():
        if not done.wait(seconds):
            os.close(os.open(store / "fifo.json", os.O_WRONLY | os.O_NONBLOCK))

    done = threading.Event()
    threading.Thread(target=unblock, daemon=True).start()
    return done


@pytest.mark.parametrize("num_proc", [1, 2])
def test_odd_files_are_reported_and_never_stop_an_export(odd_store, tmp_path, chunked, num_proc):
    done = _unblock_fifos_after(odd_store, 20)
    out = tmp_path / "out"
    run = export_store(odd_store, out, parse_config({}), CONVERT, num_proc=num_proc, options=chunked)
    done.set()
    assert run.files_read == 10 and run.result.statistics["total_samples"] == 6
    report = [(line["file"].rsplit("/", 1)[-1], line["reason"]) for line in read_jsonl(out / "rejected.jsonl")]
    assert report == ODD_REPORT


def test_the_builder_reads_a_store_with_odd_files(odd_store, tmp_path):
    done = _unblock_fifos_after(odd_store, 20)
    dataset = load_dataset(odd_store, "minimal", cache_dir=str(tmp_path / "c"), split=False, num_proc=2)
    done.set()
    assert dataset["train"].num_rows == 6


def test_validate_lists_odd_files(odd_store, capsys):
    from personagym_hf.cli.main import main

    done = _unblock_fifos_after(odd_store, 20)
    assert main(["validate", "--interactions", str(odd_store)]) == 1
    done.set()
    err = capsys.readouterr()
    for name, reason in ODD_REPORT:
        assert f"{odd_store.as_posix()}/{name}: {reason}" in err.out + err.err
