"""Viewer checks before a push: each fires on a folder made to break it, and a push is refused (or forced)."""

import re
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import parse_config
from personagym_hf.hub.push import PushError, _folder_files, push_to_hub
from personagym_hf.hub.viewer import check_parquet, check_staged
from personagym_hf.testing.synth import write_store

REPO = "alice/personagym"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("viewer")
    store = write_store(base / "s", count=30, personas=15, seed=4, reply_chars=40)
    export_store(store, base / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return base / "out" / "hf_dataset"


@pytest.fixture
def folder(exported, tmp_path):
    """A fresh copy of a good export, to break."""
    return shutil.copytree(exported, tmp_path / "hf_dataset")


def edit_card(folder, change) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    change(card.data)
    (folder / "README.md").write_text(str(card), encoding="utf-8")


def config_entry(data, name: str) -> dict:
    return next(config for config in data["configs"] if config["config_name"] == name)


def info_entry(data, name: str) -> dict:
    return next(info for info in data["dataset_info"] if info["config_name"] == name)


def test_a_good_export_has_no_problem(folder):
    assert check_staged(_folder_files(folder)) == []


def test_row_groups_over_the_limit(folder):
    path = "data/full/train-00000-of-00001.parquet"
    size = pq.ParquetFile(folder / path).metadata.row_group(0).total_byte_size
    assert 5000 < size < 300_000_000  # the viewer's limit, on a row group of 300 MB of test data, would be slow
    assert (
        f"{path}: row group 0 holds {size:,} bytes uncompressed; the viewer reads at most 5,000 at once "
        "(write smaller row groups)"
    ) in check_parquet(_folder_files(folder), max_row_group_bytes=5000)
    assert check_parquet(_folder_files(folder)) == []


def big_cell_export(tmp_path):
    """An export whose one row holds a message of 1.1 MB: bigger than the viewer's whole preview."""
    record = make_interaction(1)
    record["messages"][1]["content"] = "x" * 1_100_000
    store = write_files(tmp_path / "s", [record])
    export_store(
        store, tmp_path / "o", parse_config({}), TrainingDataCollector().interaction_to_training_sample, split=False
    )
    return tmp_path / "o" / "hf_dataset"


def test_a_cell_bigger_than_the_preview(tmp_path):
    problems = check_staged(_folder_files(big_cell_export(tmp_path)))
    pattern = (
        r"data/(full|messages|last_turn)/train-00000-of-00001\.parquet, row 0, (full_conversation|messages|prompt): a "
        r"cell of 1,1\d\d,\d\d\d bytes; the viewer's preview of the first 100 rows holds 1,000,000 bytes in all"
    )
    assert len(problems) == 3 and all(re.fullmatch(pattern, problem) for problem in problems), problems


def test_too_many_splits(folder):
    def many(data):
        config_entry(data, "minimal")["data_files"] = [
            {"split": f"part{i}", "path": "data/minimal/train-*"} for i in range(31)
        ]
        data["dataset_info"] = [info for info in data["dataset_info"] if info["config_name"] != "minimal"]

    edit_card(folder, many)
    assert check_staged(_folder_files(folder)) == [
        "config minimal: 31 splits; the viewer takes at most 30 (use configs for what is not train/validation/test)"
    ]


def test_a_split_name_datasets_does_not_allow(folder):
    edit_card(folder, lambda data: config_entry(data, "full")["data_files"][0].update(split="train-new"))
    assert check_staged(_folder_files(folder)) == [
        "README.md: config full: Split name should match '^\\w+(\\.\\w+)*$' but got 'train-new'."
    ]


def test_data_files_yaml_that_datasets_cannot_read(folder):
    edit_card(folder, lambda data: config_entry(data, "full").update(data_files=[{"split": "train"}]))
    assert check_staged(_folder_files(folder)) == [
        "README.md: configs: Expected data_files in YAML to be either a string or a list of strings or a list of "
        "dicts with two keys: 'split' and 'path', but got [{'split': 'train'}]"
    ]


def test_a_config_name_datasets_does_not_allow(folder):
    def rename(data):
        config_entry(data, "minimal")["config_name"] = "mini/mal"
        info_entry(data, "minimal")["config_name"] = "mini/mal"

    edit_card(folder, rename)
    assert check_staged(_folder_files(folder)) == [
        "config name 'mini/mal': Bad characters from black list '<>:/\\|?*' found in 'mini/mal'. They could create "
        "issues when creating a directory for this config on Windows filesystem."
    ]


def test_data_files_that_match_nothing_and_dataset_info_without_a_config(folder):
    def break_yaml(data):
        config_entry(data, "messages")["data_files"][1]["path"] = "data/messages/nothing-*"
        data["dataset_info"].append({**info_entry(data, "minimal"), "config_name": "ghost"})

    edit_card(folder, break_yaml)
    assert check_staged(_folder_files(folder)) == [
        "README.md: config messages split validation: no file matches data/messages/nothing-*",
        "README.md: dataset_info names config ghost, which configs lacks",
    ]


def test_a_file_that_is_not_parquet(folder):
    (folder / "data" / "test-00000-of-00001.parquet").write_bytes(b"not parquet at all")
    (problem,) = check_staged(_folder_files(folder))
    assert problem.startswith("data/test-00000-of-00001.parquet: not a readable Parquet file (")


def test_row_counts_that_the_files_do_not_hold(folder):
    rows = pq.ParquetFile(folder / "data" / "full" / "train-00000-of-00001.parquet").metadata.num_rows
    edit_card(folder, lambda data: info_entry(data, "full")["splits"][0].update(num_examples=999))
    assert check_staged(_folder_files(folder)) == [
        f"config full split train: the card says 999 rows, the files hold {rows}"
    ]


def test_features_that_the_files_do_not_hold(folder):
    def retype(data):
        features = info_entry(data, "minimal")["features"]
        next(f for f in features if f["name"] == "num_turns")["dtype"] = "string"
        next(f for f in features if f["name"] == "initial_query")["dtype"] = "int64"

    edit_card(folder, retype)
    (problem,) = check_staged(_folder_files(folder))
    assert problem.startswith("config minimal: load_dataset fails: ")


def test_push_is_refused_with_one_line_per_problem_unless_skipped(hub, tmp_path, capsys):
    folder = big_cell_export(tmp_path)
    with pytest.raises(PushError) as refused:
        push_to_hub(folder, REPO, backoff=0)
    lines = str(refused.value).splitlines()
    problems = f"{len(lines) - 1} problem{'s' if len(lines) > 2 else ''}"
    assert lines[0] == (
        f"the Hub's dataset viewer would reject {folder}: {problems} "
        "(fix them, or pass --skip-viewer-checks to push anyway):"
    )
    assert len(lines) == 4 and all(line.startswith("  data/") and ": a cell of 1,1" in line for line in lines[1:])
    assert hub.commit_count(REPO) == 0 and hub.count_requests("POST", r"/api/repos/create") == 0
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q", "--dry-run"]) == 1
    out, err = capsys.readouterr()
    assert out.endswith("dry run: nothing was uploaded\n")
    assert err.startswith("personagym-hf push: error: the push would fail: the Hub's dataset viewer would reject ")
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q", "--skip-viewer-checks"]) == 0
    assert hub.commit_count(REPO) == 1
