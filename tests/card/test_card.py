"""The card's license is one of the Hub's identifiers (or none, said so), and its languages come from the data."""

import json
import re
from collections import Counter

import pytest
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.card.render import LICENSES_URL, hub_licenses, template_path
from personagym_hf.cli.main import main
from personagym_hf.config import parse_config
from personagym_hf.hub.push import push_to_hub
from personagym_hf.testing.synth import write_store

REPO = "alice/personagym"
NO_LICENSE = f"  license: none set; pass --license with an identifier from {LICENSES_URL}"


def export(store, out):
    export_store(store, out, parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return out / "hf_dataset"


def card_data(text: str) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard(text).data.to_dict()


@pytest.fixture
def folder(tmp_path):
    """Personas whose features name their language in different ways (and one that names none)."""
    features = [
        {"role": "a", "language": "de"},
        {"role": "b", "language": "de"},
        {"role": "c", "language": "DE"},
        {"role": "d", "locale": "fr_CA"},
        {"role": "e", "locale": "fr-ca"},
        {"role": "f", "lang": "en-GB"},
        {"role": "g", "language": "English"},  # not a code: left out
        {"role": "h"},
    ]
    records = [make_interaction(i, persona=f"persona_{i}", persona_features=f) for i, f in enumerate(features)]
    return export(write_files(tmp_path / "store", records), tmp_path / "out")


def test_the_license_list_is_the_hubs_documented_table():
    table = template_path("hub_licenses.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    licenses = hub_licenses()
    assert len(licenses) == len(rows) and len(licenses) > 80
    assert licenses["apache-2.0"] == "Apache license 2.0"
    assert licenses["cc-by-4.0"] == "Creative Commons Attribution 4.0"
    assert {"mit", "other", "unknown", "llama3.1", "openrail++"} <= set(licenses)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", name) for name in licenses)


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "not-a-license",
            f"license 'not-a-license' is not a license identifier of the Hub; pick one from {LICENSES_URL}",
        ),
        (
            "cc-by-4",
            f"license 'cc-by-4' is not a license identifier of the Hub (did you mean cc-by-4.0?); pick one from "
            f"{LICENSES_URL}",
        ),
        (
            "Apache-2.0",
            f"license 'Apache-2.0' is not a license identifier of the Hub (did you mean apache-2.0?); "
            f"pick one from {LICENSES_URL}",
        ),  # fmt: skip
        (
            "cc-by",  # a family: its versions are the identifiers (it had no suggestion)
            "license 'cc-by' is not a license identifier of the Hub (did you mean one of cc-by-2.0, cc-by-2.5, "
            f"cc-by-3.0, cc-by-4.0?); pick one from {LICENSES_URL}",
        ),
        (
            "CC-BY-SA",
            "license 'CC-BY-SA' is not a license identifier of the Hub (did you mean one of cc-by-sa-3.0, "
            f"cc-by-sa-4.0?); pick one from {LICENSES_URL}",
        ),
    ],
    ids=["unknown", "close_match", "case", "family", "family_in_capitals"],
)
@pytest.mark.parametrize("command", ["card", "push"])
def test_a_license_that_is_not_a_hub_identifier_is_refused_before_any_request(
    hub, folder, capsys, command, value, message
):
    args = [command, "--data", str(folder), "--license", value] + (["--repo", REPO, "-q"] if command == "push" else [])
    assert main(args) == 1
    assert capsys.readouterr().err == f"personagym-hf {command}: error: {message}\n"
    assert hub.requests == []


def test_no_license_is_not_set_and_the_summary_says_so(hub, folder, capsys):
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 0
    assert NO_LICENSE in capsys.readouterr().out.splitlines()
    result = push_to_hub(folder, REPO, backoff=0, verify=False)
    assert "license" not in card_data(hub.files(REPO)["README.md"].decode())
    assert result.plan.card_license is None


def test_the_license_given_is_set_and_one_set_on_the_hub_is_kept(hub, folder, capsys):
    from huggingface_hub import DatasetCard, HfApi

    push_to_hub(folder, REPO, license="cc-by-4.0", backoff=0, verify=False)
    assert card_data(hub.files(REPO)["README.md"].decode())["license"] == "cc-by-4.0"
    card = DatasetCard(hub.files(REPO)["README.md"].decode())
    card.data.license = "mit"  # chosen by hand on the Hub
    HfApi().upload_file(
        path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=REPO, repo_type="dataset"
    )
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  license: mit" in out and "  nothing to upload: the repo already holds this data" in out


def test_card_without_a_license_says_so_on_stderr(folder, capsys):
    assert main(["card", "--data", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "license" not in card_data(out)
    assert err == f"personagym-hf card: note: no license set; pass --license with an identifier from {LICENSES_URL}\n"


def test_languages_come_from_persona_features(hub, folder, capsys):
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 0
    assert "  language: de, fr, en" in capsys.readouterr().out.splitlines()
    push_to_hub(folder, REPO, backoff=0, verify=False)
    data = card_data(hub.files(REPO)["README.md"].decode())
    assert data["language"] == ["de", "fr", "en"]  # by samples: 3, 2, 1
    assert data["language_details"] == ["de", "fr-CA", "en-GB"]  # BCP-47, as the card spec has it


def test_languages_of_a_synthetic_store_match_its_personas(tmp_path, capsys):
    store = write_store(tmp_path / "s", count=60, personas=30, seed=5, reply_chars=40)
    folder = export(store, tmp_path / "out")
    counts = Counter()
    for path in store.glob("*.json"):
        language = json.loads(path.read_text(encoding="utf-8")).get("persona_features", {}).get("language")
        if language:
            counts[language.split("-")[0]] += 1
    assert len(counts) > 1
    expected = [code for code, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    assert main(["card", "--data", str(folder), "--license", "mit"]) == 0
    assert card_data(capsys.readouterr().out)["language"] == expected


def test_language_option_overrides_and_is_checked(folder, capsys):
    assert main(["card", "--data", str(folder), "--language", "ja,en-US", "--license", "mit"]) == 0
    data = card_data(capsys.readouterr().out)
    assert (data["language"], data["language_details"]) == (["ja", "en"], ["ja", "en-US"])
    assert main(["card", "--data", str(folder), "--language", "English"]) == 1
    assert capsys.readouterr().err == (
        "personagym-hf card: error: language 'English' is not a language code: expected ISO 639 codes such as "
        "en, de or ja, or BCP-47 tags such as en-GB\n"
    )


def test_no_language_found_is_said_in_the_summary(hub, tmp_path, capsys):
    folder = export(write_files(tmp_path / "store", [make_interaction(1)]), tmp_path / "out")
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 0
    assert "  language: none found in persona_features; pass --language" in capsys.readouterr().out.splitlines()


def test_the_ppopt_card_takes_its_languages_from_every_split(hub, tmp_path):
    from personagym_hf.hub.ppopt import upload_jsonl

    def rows(language: str, count: int) -> str:
        row = {"sample_id": "s", "persona_id": "p", "persona_features": {"language": language}, "variant": "styled",
               "query": "q", "noise_type": "none", "applied_strategies": [], "original_query": "Q"}  # fmt: skip
        return "".join(json.dumps(row) + "\n" for _ in range(count))

    (tmp_path / "train.jsonl").write_text(rows("ja", 3) + rows("de-AT", 1), encoding="utf-8")
    (tmp_path / "test.jsonl").write_text(rows("de", 4), encoding="utf-8")
    upload_jsonl(tmp_path / "train.jsonl", "bob/pp", split="train", backoff=0)
    assert card_data(hub.files("bob/pp")["README.md"].decode())["language"] == ["ja", "de"]
    upload_jsonl(tmp_path / "test.jsonl", "bob/pp", split="test", backoff=0)
    data = card_data(hub.files("bob/pp")["README.md"].decode())
    assert (data["language"], data["language_details"]) == (["de", "ja"], ["de", "de-AT", "ja"])


def test_the_card_rounds_turns_and_gives_noise_rates_as_percentages(tmp_path, capsys):
    """It showed `2.3125 user turns` and noise rates as fractions in the splits table (0.375) beside 28.7% in the
    text."""
    assert main(["export", "--demo", "--output", str(tmp_path / "out"), "-q"]) == 0
    card = (tmp_path / "out" / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert "- **80** samples from **40** personas; 2.31 user turns on average;\n  28.7% of samples" in card
    rows = [
        "| train | 64 | 32 | 2.30 | 28.1% |",
        "| validation | 8 | 4 | 2.12 | 37.5% |",
        "| test | 8 | 4 | 2.62 | 25.0% |",
    ]
    assert "\n".join(rows) in card
