import json
import os
import pickle
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_interaction, write_files
from cut_stores import array_store, jsonl_store
from exporting import ConvertRecordingProcesses, export_store, snapshot

from personagym_hf import BadInputError, TrainingDataCollector, TrainingDataExporter
from personagym_hf.config import ConfigError, RunOptions, parse_config

CONVERT = TrainingDataCollector().interaction_to_training_sample


def run(store, out, config=None, **options):
    return export_store(store, out, parse_config(config or {}), CONVERT, **options)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_split_export_writes_the_seed_files_and_jsonl_beside_them(small_store, tmp_path):
    out = tmp_path / "out"
    result = run(small_store, out, hf_dataset=False).result
    assert sorted(p.name for p in out.iterdir()) == [
        ".personagym-export.json",
        "statistics.json",
        "test_samples.json",
        "test_samples.jsonl",
        "train_samples.json",
        "train_samples.jsonl",
        "val_samples.json",
        "val_samples.jsonl",
    ]
    assert result.json_files == {
        s: out / f"{p}_samples.json" for s, p in [("train", "train"), ("validation", "val"), ("test", "test")]
    }
    total = 0
    for split, path in result.json_files.items():
        rows = read_json(path)
        assert rows == read_jsonl(path.with_suffix(".jsonl"))
        assert path.read_text(encoding="utf-8") == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        total += len(rows)
    assert total == 12
    personas = [{row["persona_id"] for row in read_json(p)} for p in result.json_files.values()]
    assert not (personas[0] & personas[1] or personas[0] & personas[2] or personas[1] & personas[2])


def test_non_ascii_is_written_as_is(tmp_path):
    store = write_files(tmp_path / "s", [make_interaction(1, initial_query="caf\u00e9 \u65e5\u672c\u8a9e")])
    run(store, tmp_path / "out", split=False, hf_dataset=False)
    assert "caf\u00e9 \u65e5\u672c\u8a9e" in (tmp_path / "out" / "train_samples.json").read_text(encoding="utf-8")
    assert "caf\u00e9" in (tmp_path / "out" / "train_samples.jsonl").read_text(encoding="utf-8")


def test_seed_minimal_format_gives_exactly_the_documented_fields(small_store, tmp_path):
    config = {
        "training_data": {
            "format": {"include_persona": False, "include_trajectory": True, "include_distractor_versions": False}
        }
    }
    run(small_store, tmp_path / "out", config, split=False, hf_dataset=False)
    rows = read_json(tmp_path / "out" / "train_samples.json")
    assert rows[0] == {
        "sample_id": "sample_persona_000_0000",
        "initial_query": "hey can u help me write some python code",
        "prompt_trajectory": ["hey can u help me write some python code", "a script to process csv files"],
        "num_turns": 2,
    }


def test_timestamps_in_file_names_only_when_asked(small_store, tmp_path):
    run(small_store, tmp_path / "out", split=False, use_timestamp=True, hf_dataset=False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [re.sub(r"_\d{8}_\d{6}\.", "_<stamp>.", name) for name in names] == [
        "statistics_<stamp>.json",
        "train_samples_<stamp>.json",
        "train_samples_<stamp>.jsonl",
    ]


def test_same_store_gives_byte_identical_outputs(small_store, tmp_path):
    run(small_store, tmp_path / "a")
    run(small_store, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert len(snapshot(tmp_path / "a")) > 10


def test_statistics_have_exact_values(tmp_path):
    records = [
        make_interaction(1, persona="p1", persona_features={"role": "engineer"}),
        make_interaction(2, persona="p1", persona_features={"role": "engineer"}),
        make_interaction(3, persona="p2", persona_features={"role": "student"}),
    ]
    records[0]["metadata"]["semantic_noise"] = {
        "initial_query": {"noisy_text": "hye", "layer": "surface_noise", "applied_strategies": ["typo_misspelling"]}
    }
    records[2]["messages"] = records[2]["messages"][:2]
    stats = run(write_files(tmp_path / "s", records), tmp_path / "out", split=False).result.statistics
    assert stats == read_json(tmp_path / "out" / "statistics.json")
    from personagym_hf.measure.leakage import method

    # one split: the audit has nothing to compare
    assert stats.pop("leakage") == {"method": method(), "samples": {"train": 3}, "pairs": {}, "max_share": 0.0}
    assert stats == {
        "total_samples": 3,
        "samples_by_split": {"train": 3, "validation": 0, "test": 0},
        "held_out": 0,
        "avg_turns": 1.6667,
        "avg_trajectory_length": 1.6667,
        "distractor_stats": {
            "samples_with_noise": 1,
            "noise_rate": 0.3333,
            "layer_distribution": {"surface_noise": 1},
            "strategy_distribution": {"typo_misspelling": 1},
        },
        "persona_distribution": {"engineer": 2, "student": 1},
        "model_distribution": {"openai/gpt-4o-mini": 3},
        "total_personas": 2,
        "splits": {
            "train": {"samples": 3, "personas": 2, "avg_turns": 1.6667, "noise_rate": 0.3333},
            "validation": {"samples": 0, "personas": 0, "avg_turns": 0.0, "noise_rate": 0.0},
            "test": {"samples": 0, "personas": 0, "avg_turns": 0.0, "noise_rate": 0.0},
        },
        "created_at": "2026-02-06T10:03:00",
        "configs": {  # what the export wrote of each config (its split only)
            "full": {"rows": {"train": 3}},
            "minimal": {"rows": {"train": 3}},
            "messages": {"rows": {"train": 3}},
            "last_turn": {"rows": {"train": 3}, "left_out_samples": 0},
            "query_rewrite": {"rows": {"train": 4}},
            "rewrite": {"rows": {"train": 4}, "left_out_variants": 0},
        },
    }


def test_bad_records_are_reported_and_good_ones_kept(tmp_path):
    store = write_files(tmp_path / "s", [make_interaction(1), make_interaction(2, messages=[])])
    (store / "z_dupe.jsonl").write_text(json.dumps(make_interaction(1)) + "\n{oops\n", encoding="utf-8")
    run_ = run(store, tmp_path / "out", split=False, hf_dataset=False)
    assert [r["sample_id"] for r in read_json(tmp_path / "out" / "train_samples.json")] == ["sample_persona_001_0001"]
    report = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert report == [
        {
            "file": f"{store.as_posix()}/interaction_persona_001_0002.json",
            "where": "",
            "interaction_id": "interaction_persona_001_0002",
            "reason": "'messages' is empty",
        },
        {
            "file": f"{store.as_posix()}/z_dupe.jsonl",
            "where": "line 1",
            "interaction_id": "interaction_persona_001_0001",
            "reason": "duplicate interaction_id (already read from "
            f"{store.as_posix()}/interaction_persona_001_0001.json); kept the first",
        },
        {
            "file": f"{store.as_posix()}/z_dupe.jsonl",
            "where": "line 2, column 2",
            "interaction_id": None,
            "reason": "invalid JSON (unexpected character, expected a string key)",
        },
    ]
    assert len(run_.rejections.bad) == 3


def test_on_bad_records_error_stops_and_writes_no_data(tmp_path, small_store):
    out = tmp_path / "out"
    run(small_store, out)
    before = snapshot(out)
    (small_store / "zz_bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(BadInputError) as raised:
        run(small_store, out, {"training_data": {"on_bad_records": "error"}})
    assert str(raised.value) == (
        f"{small_store.as_posix()}/zz_bad.json, line 1, column 2: invalid JSON (unexpected end of data) "
        "(fix the record, or rerun with --on-bad-records warn to skip bad records)"
    )
    assert snapshot(out) == before


def test_a_run_that_fails_halfway_leaves_earlier_outputs_intact(tmp_path, small_store):
    out = tmp_path / "out"
    run(small_store, out)
    before = snapshot(out)

    def explode(interaction):
        if interaction["interaction_id"].endswith("0007"):
            raise RuntimeError("disk on fire")
        return CONVERT(interaction)

    with pytest.raises(RuntimeError, match="disk on fire"):
        export_store(small_store, out, parse_config({}), explode)
    assert snapshot(out) == before


def test_append_adds_only_new_samples_and_keeps_old_rows_in_their_split(tmp_path):
    store = write_files(tmp_path / "s", [make_interaction(n, persona=f"p{n % 7}") for n in range(20)])
    out = tmp_path / "out"
    run(store, out, hf_dataset=False)
    first = {s: read_json(out / f"{s}_samples.json") for s in ("train", "val", "test")}
    # A row the store no longer holds, and a store that changed its mind about a kept sample, stay as exported.
    (store / "interaction_p0_0000.json").unlink()
    write_files(store, [make_interaction(n, persona=f"p{n % 7}") for n in range(20, 30)])
    result = run(store, out, append=True, hf_dataset=False).result
    assert (result.new_samples, result.kept_samples) == (10, 20)
    second = {s: read_json(out / f"{s}_samples.json") for s in ("train", "val", "test")}
    for name in first:
        assert second[name][: len(first[name])] == first[name]
    ids = [row["sample_id"] for rows in second.values() for row in rows]
    assert len(ids) == len(set(ids)) == 30
    assert read_json(out / "statistics.json")["total_samples"] == 30
    again = run(store, out, append=True, hf_dataset=False).result
    assert (again.new_samples, again.kept_samples) == (0, 30)


def test_token_usage_is_merged_without_counting_a_record_twice(tmp_path, small_store):
    record = {
        "module": "interaction_generation",
        "operation": "assistant_response",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 150,
        "output_tokens": 75,
        "total_tokens": 225,
        "timestamp": "2026-02-06T10:30:00",
        "metadata": {},
    }
    other = {
        **record,
        "module": "distractor",
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "timestamp": "2026-02-06T10:31:00",
    }
    (small_store / "token_usage_1.json").write_text(json.dumps({"records": [record]}), encoding="utf-8")
    (small_store.parent / "token_usage_2.json").write_text(json.dumps({"records": [record, other]}), encoding="utf-8")
    run(small_store, tmp_path / "out", hf_dataset=False)
    assert read_json(tmp_path / "out" / "token_usage.json") == {
        "summary": {"total_calls": 2, "total_input_tokens": 160, "total_output_tokens": 80, "total_tokens": 240},
        "by_module": {
            "distractor": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "call_count": 1},
            "interaction_generation": {"input_tokens": 150, "output_tokens": 75, "total_tokens": 225, "call_count": 1},
        },
        "by_model": {
            "openai/gpt-4o-mini": {"input_tokens": 160, "output_tokens": 80, "total_tokens": 240, "call_count": 2}
        },
        "records": [record, other],
    }


def test_no_token_usage_file_when_the_store_has_none(small_store, tmp_path):
    run(small_store, tmp_path / "out", hf_dataset=False)
    assert not (tmp_path / "out" / "token_usage.json").exists()


def test_exporter_export_samples_and_statistics(tmp_path, small_store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = TrainingDataCollector({}).collect_from_interactions(
        json.loads(p.read_text()) for p in sorted(small_store.glob("*.json"))
    )
    exporter = TrainingDataExporter({})
    files = exporter.export_samples(samples, split=True, use_timestamp=False)
    assert files == {
        "train": "output/training_data/train_samples.json",
        "validation": "output/training_data/val_samples.json",
        "test": "output/training_data/test_samples.json",
    }
    assert sum(len(read_json(Path(p))) for p in files.values()) == 12
    stats_file = exporter.export_statistics(samples, use_timestamp=False)
    assert stats_file == "output/training_data/statistics.json"
    assert read_json(Path(stats_file)) == exporter.compute_statistics(samples)
    assert read_json(Path(stats_file))["samples_by_split"] == {
        name: len(read_json(Path(path))) for name, path in files.items()
    }


@pytest.fixture
def chunked() -> RunOptions:
    """Chunks of 7 files, so a small store spans several chunks."""
    return RunOptions(chunk_files=7)


def test_num_proc_gives_the_same_bytes_as_one_process(tmp_path, chunked):
    from personagym_hf.testing.synth import write_store

    store = write_store(tmp_path / "s", count=60, personas=25, seed=4, reply_chars=50)
    alone, convert = ConvertRecordingProcesses(tmp_path / "pids1"), ConvertRecordingProcesses(tmp_path / "pids2")
    one = export_store(store, tmp_path / "one", parse_config({}), alone, options=chunked)
    two = export_store(store, tmp_path / "two", parse_config({}), convert, num_proc=2, options=chunked)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")
    assert one.result.statistics["total_samples"] == two.result.statistics["total_samples"] == 60
    assert alone.processes() == {os.getpid()}
    assert convert.processes() and os.getpid() not in convert.processes()  # worker processes converted, not this one
    assert not list(tmp_path.glob("*/.chunks-*"))


def test_run_options_size_the_chunks_and_the_arrow_batches(tmp_path):
    from personagym_hf.read.plan import Files
    from personagym_hf.read.store import discover_paths
    from personagym_hf.run.chunks import ChunkJob, encode_chunk, plan_tasks
    from personagym_hf.testing.synth import write_store
    from personagym_hf.transform.encode import Encoder

    files = discover_paths(write_store(tmp_path / "s", count=20, personas=5, seed=4, reply_chars=50))
    encoder = Encoder(parse_config({}), split=False, views=True, options=RunOptions(batch_rows=3))
    job = ChunkJob(files, encoder, CONVERT)
    tasks = plan_tasks(files, RunOptions(chunk_files=7), tmp_path / "staging")
    chunks = [(task, encode_chunk(job, task, in_memory=True)) for task in tasks]
    assert [task.chunk for task, _ in chunks] == [Files(0, 7), Files(7, 14), Files(14, 20)]
    full = [table.num_rows for _task, chunk in chunks for config, _split, table in chunk.batches if config == "full"]
    assert full == [3, 3, 1, 3, 3, 1, 3, 3]


def test_spawned_workers_give_the_same_bytes_as_forked_ones(tmp_path, chunked):
    """The chunk job reaches each worker in its pool's initargs, so a worker that inherits nothing has it too."""
    from personagym_hf.testing.synth import write_store

    store = write_store(tmp_path / "s", count=60, personas=25, seed=4, reply_chars=50)
    fork = export_store(store, tmp_path / "fork", parse_config({}), CONVERT, options=replace(chunked, num_proc=2))
    spawn = replace(chunked, num_proc=2, start_method="spawn")
    spawned = export_store(store, tmp_path / "spawn", parse_config({}), CONVERT, options=spawn)
    assert snapshot(tmp_path / "fork") == snapshot(tmp_path / "spawn")
    assert fork.result.statistics["total_samples"] == spawned.result.statistics["total_samples"] == 60


def test_a_collector_spawned_workers_cannot_import_is_one_line(tmp_path, chunked):
    from personagym_hf.testing.synth import write_store

    class Local(TrainingDataCollector):
        pass

    store = write_store(tmp_path / "s", count=20, personas=5, seed=4, reply_chars=50)
    options = replace(chunked, num_proc=2, start_method="spawn")
    with pytest.raises(ConfigError) as error:
        export_store(
            store, tmp_path / "out", parse_config({}), Local().interaction_to_training_sample, options=options
        )
    with pytest.raises((pickle.PicklingError, AttributeError)) as why:  # its wording depends on the Python version
        pickle.dumps(Local().interaction_to_training_sample)
    assert str(error.value) == (
        "start_method 'spawn': the collector test_export:test_a_collector_spawned_workers_cannot_import_is_one_line."
        f"<locals>.Local cannot be sent to worker processes ({why.value}); define it at the top level of an "
        "importable module, or use start_method 'fork'"
    )
    assert not (tmp_path / "out").exists()
    # Forked workers inherit the class: the same collector exports.
    forked = export_store(
        store, tmp_path / "out", parse_config({}), Local().interaction_to_training_sample, num_proc=2, options=chunked
    )
    assert forked.result.statistics["total_samples"] == 20


def test_a_duplicate_in_a_later_chunk_is_reported_and_dropped(tmp_path, chunked):
    records = [make_interaction(n, persona=f"p{n % 4}") for n in range(10)]
    store = write_files(tmp_path / "s", records)
    lines = [make_interaction(n, persona="p9") for n in (20, 21)]
    (store / "a_lines.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    (store / "zz_copy.json").write_text(json.dumps(records[0]), encoding="utf-8")  # read in the second chunk
    (store / "zz_copy2.json").write_text(json.dumps(lines[1]), encoding="utf-8")
    for num_proc in (1, 2):
        run_ = export_store(
            store, tmp_path / f"out{num_proc}", parse_config({}), CONVERT, num_proc=num_proc, options=chunked
        )
        assert run_.result.statistics["total_samples"] == 12
        assert [b.to_dict() for b in run_.rejections.bad] == [
            {
                "file": f"{store.as_posix()}/zz_copy.json",
                "where": "",
                "interaction_id": "interaction_p0_0000",
                "reason": f"duplicate interaction_id (already read from {store.as_posix()}/interaction_p0_0000.json); "
                "kept the first",
            },
            {
                "file": f"{store.as_posix()}/zz_copy2.json",
                "where": "",
                "interaction_id": "interaction_p9_0021",
                "reason": f"duplicate interaction_id (already read from {store.as_posix()}/a_lines.jsonl line 2); "
                "kept the first",
            },
        ]
    assert snapshot(tmp_path / "out1") == snapshot(tmp_path / "out2")


def test_error_policy_stops_a_worker_run_and_writes_nothing(tmp_path, chunked):
    store = write_files(tmp_path / "s", [make_interaction(n) for n in range(20)])
    (store / "interaction_persona_001_0015.json").write_text("{", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"interaction_persona_001_0015.json, line 1, column 2: invalid JSON"):
        export_store(
            store,
            tmp_path / "out",
            parse_config({"training_data": {"on_bad_records": "error"}}),
            CONVERT,
            num_proc=2,
            options=chunked,
        )
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_write_that_fails_fails_the_run_and_keeps_earlier_outputs(tmp_path, small_store, monkeypatch):
    from personagym_hf.write.parquet import ParquetSplitWriter

    out = tmp_path / "out"
    run(small_store, out)
    before = snapshot(out)

    def full_disk(self, table):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ParquetSplitWriter, "add_table", full_disk)
    with pytest.raises(OSError, match=f"no space left on device writing {out} "):
        run(small_store, out)
    assert snapshot(out) == before  # no temporary file left behind either


def test_the_cards_languages_come_from_the_personas_at_export(tmp_path):
    import yaml

    records = [make_interaction(i, persona=f"persona_{i:03d}") for i in range(5)]
    for record, language in zip(records, ["ja", "en-GB", "en", "ja", "fr"]):
        record["persona_features"]["language"] = language
    run(write_files(tmp_path / "s", records), tmp_path / "out")
    card = (tmp_path / "out" / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    data = yaml.safe_load(card.split("---")[1])
    assert (data["language"], data["language_details"]) == (["en", "ja", "fr"], ["en", "en-GB", "ja", "fr"])


def test_big_json_arrays_cut_into_pieces_give_the_same_bytes(tmp_path):
    from personagym_hf.read.plan import Files, Items
    from personagym_hf.read.store import discover_paths
    from personagym_hf.run.chunks import plan_tasks

    store = array_store(tmp_path / "s")
    cut = RunOptions(chunk_bytes=8192)
    tasks = plan_tasks(discover_paths(store), cut)
    assert len(tasks) > 40 and all(isinstance(task.chunk, Items) for task in tasks)  # every file in many pieces
    assert [task.chunk for task in plan_tasks(discover_paths(store), RunOptions())] == [Files(0, 3)]  # by default
    whole = export_store(store, tmp_path / "whole", parse_config({}), CONVERT)
    for num_proc in (1, 2):
        pieces = export_store(
            store, tmp_path / f"np{num_proc}", parse_config({}), CONVERT, options=replace(cut, num_proc=num_proc)
        )
        assert snapshot(tmp_path / "whole") == snapshot(tmp_path / f"np{num_proc}")
        assert [bad.describe() for bad in pieces.rejections.bad] == [bad.describe() for bad in whole.rejections.bad]
    assert whole.result.statistics["total_samples"] == 449  # 450, less the last one, cut short
    at = (store / "part1.json").read_bytes().index(b'{"interaction_id": nul}')
    first = f"{store.as_posix()}/part0.json item 10"
    assert [(Path(bad.source).name, bad.where, bad.reason) for bad in whole.rejections.bad] == [
        ("part1.json", "item 70", f"invalid JSON (invalid literal, expected 'null'; the item starts at byte {at})"),
        ("part1.json", "item 71", f"duplicate interaction_id (already read from {first}); kept the first"),
        ("part2.json", "item 149", "truncated JSON array (no closing ']')"),
    ]


@pytest.mark.parametrize("num_proc", [1, 2])
def test_big_jsonl_files_cut_into_byte_ranges_give_the_same_bytes(tmp_path, num_proc):
    from personagym_hf.read.plan import Files, Range
    from personagym_hf.read.store import discover_paths
    from personagym_hf.run.chunks import plan_tasks

    store = jsonl_store(tmp_path / "s")
    cut = RunOptions(chunk_bytes=8192, num_proc=num_proc)
    tasks = plan_tasks(discover_paths(store), cut)
    assert len(tasks) > 20 and all(isinstance(task.chunk, Range) for task in tasks)  # every file in many ranges
    assert [task.chunk for task in plan_tasks(discover_paths(store), RunOptions())] == [Files(0, 3)]  # by default
    whole = export_store(store, tmp_path / "whole", parse_config({}), CONVERT)
    ranges = export_store(store, tmp_path / "ranges", parse_config({}), CONVERT, options=cut)
    assert snapshot(tmp_path / "whole") == snapshot(tmp_path / "ranges")
    assert whole.result.statistics["total_samples"] == ranges.result.statistics["total_samples"] == 450
    assert [bad.describe() for bad in ranges.rejections.bad] == [bad.describe() for bad in whole.rejections.bad]
    first = f"{store.as_posix()}/part0.jsonl line 11"
    assert [(Path(bad.source).name, bad.where, bad.reason) for bad in ranges.rejections.bad] == [
        ("part2.jsonl", "line 71, column 1", "invalid JSON (invalid literal, expected 'null')"),
        ("part2.jsonl", "line 73", f"duplicate interaction_id (already read from {first}); kept the first"),
    ]


@pytest.mark.parametrize("later", [True, False])
def test_an_index_that_answers_later_is_asked_for_a_chunks_answer_once_the_next_chunk_is_in(later):
    from types import SimpleNamespace

    import numpy as np

    from personagym_hf.measure.seen import unpack_location
    from personagym_hf.run.job import encode_store

    log = []

    class Index:
        answers_later = later

        def ask(self, high, low, locations):
            number = unpack_location(int(locations[0]))[0]  # the chunk's one file
            log.append(f"ask {number}")
            return lambda: log.append(f"answer {number}") or np.full(len(high), -1, dtype=np.int64)

    def chunk(number):
        kept = [SimpleNamespace(sample_id=f"s{number}", source=f"f{number}.json", where="")]
        encoded = SimpleNamespace(kept=kept, duplicates=[], report=lambda rejections, firsts: None)
        return SimpleNamespace(encoded=encoded, firsts={})

    class Runner:
        def chunks(self, job, tasks):
            for task in tasks:
                log.append(f"in {task.index}")
                yield task, chunk(task.index)

        def id_index(self):
            return Index()

    job = SimpleNamespace(files=[f"f{n}.json" for n in range(3)])
    tasks = [SimpleNamespace(index=n, files=lambda n=n: range(n, n + 1)) for n in range(3)]
    for task, _chunk in encode_store(job, tasks, Runner(), rejections=None):
        log.append(f"out {task.index}")
    if later:  # the round trip of chunk n overlaps the wait for chunk n + 1
        assert log == ["in 0", "ask 0", "in 1", "ask 1", "answer 0", "out 0", "in 2", "ask 2", "answer 1", "out 1"] + [
            "answer 2",
            "out 2",
        ]
    else:  # an index in this process: each chunk goes on at once, and no chunk waits in memory
        assert log == [f"{step} {n}" for n in range(3) for step in ("in", "ask", "answer", "out")]
