"""Every Python snippet of the seed guide (tests/fixtures/seed_training_data.md) runs unchanged against
this package, except `src.` -> `personagym_hf.`. The test supplies what the snippets leave undefined:
`config` (a dict loaded from YAML), `interaction_dict`/`interactions`, `compute_custom_value`,
`load_existing_samples`, and the typing names of the dataclass snippets."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import pytest
from seed_guide import SEED

from personagym_hf import TrainingDataCollector, TrainingDataExporter, load_config
from personagym_hf.request import Outputs
from personagym_hf.testing.synth import write_store

SHELL_BLOCKS = 2  # the two "python scripts/..." blocks are shell commands; test_scripts.py runs them


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), flags=re.S)
    return [block.replace("src.", "personagym_hf.") for block in blocks]


def test_the_seed_has_the_blocks_this_test_expects():
    blocks = python_blocks()
    assert len(blocks) == 19
    assert (
        sum(block.lstrip().startswith(("# Use the provided script", "python scripts/")) for block in blocks)
        == SHELL_BLOCKS
    )


def test_every_python_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_store(tmp_path / "output" / "interactions", count=40, personas=20, seed=3, reply_chars=80)
    (tmp_path / "config.yaml").write_text(
        "training_data:\n"
        "  format: {include_persona: true, include_trajectory: true, include_distractor_versions: true}\n"
        "  split: {train: 0.8, validation: 0.1, test: 0.1}\n",
        encoding="utf-8",
    )
    interactions = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((tmp_path / "output" / "interactions").glob("interaction_*.json"))
    ]

    def load_existing_samples() -> set[str]:
        return {row["sample_id"] for row in json.loads(Path("output/training_data/train_samples.json").read_text())}

    namespace: dict[str, Any] = {
        "config": load_config("config.yaml"),
        "interaction_dict": interactions[0],
        "interactions": interactions,
        "dataclass": dataclass,
        "Dict": Dict,
        "List": List,
        "Any": Any,
        "load_existing_samples": load_existing_samples,
    }
    ran = 0
    for block in python_blocks():
        if block.lstrip().startswith(("# Use the provided script", "python scripts/")):
            continue
        exec(compile(block, f"<seed snippet {ran}>", "exec"), namespace)
        ran += 1
    assert ran == 17

    out = capsys.readouterr().out
    assert "Collected 40 training samples" in out
    assert "Average turns: " in out and "Noise rate: " in out
    written = sorted(p.name for p in (tmp_path / "output" / "training_data").iterdir())
    assert "train_samples.json" in written and "val_samples.json" in written and "test_samples.json" in written
    assert any(re.fullmatch(r"train_samples_\d{8}_\d{6}\.json", name) for name in written)
    assert any(re.fullmatch(r"statistics_\d{8}_\d{6}\.json", name) for name in written)

    # The seed's CustomCollector works once its helper exists, through the collector and the exporter.
    class Custom(namespace["CustomCollector"]):
        def compute_custom_value(self, interaction):
            return len(interaction["messages"])

    assert issubclass(Custom, TrainingDataCollector)
    sample = Custom({}).interaction_to_training_sample(interactions[0])
    assert sample.metadata["custom_field"] == len(interactions[0]["messages"])
    run = TrainingDataExporter({}, collector=Custom({})).export_store(
        "output/interactions", outputs=Outputs(hf_dataset=False)
    )
    rows = json.loads(run.result.json_files["train"].read_text(encoding="utf-8"))
    assert all(row["metadata"]["custom_field"] == row["num_turns"] * 2 for row in rows)


@pytest.mark.parametrize("flag", ["include_full_conversation", "include_metadata"])
def test_seed_include_exclude_block_gives_the_full_output(flag):
    from personagym_hf.config import format_flags

    block = re.search(r"### Include/Exclude Fields\n\n```yaml\n(.*?)```", SEED.read_text(encoding="utf-8"), re.S)
    import yaml

    assert format_flags(yaml.safe_load(block.group(1))["training_data"]["format"])[flag] is True
