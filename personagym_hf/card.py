"""The dataset card: a `DatasetCard` rendered from `dataset_card/template.md`.

The YAML carries `configs` (data files per split, `full` as default) and `dataset_info` (features and
split sizes, in the form `datasets` writes: `schema.yaml_features`), which is all `load_dataset(folder)` and
`load_dataset("user/repo")` need. Text a user adds outside the generated section (between the
`personagym-hf:generated` markers), and YAML keys we do not generate, survive a re-render.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from .views import CONFIG_NAMES

START, END = "<!-- personagym-hf:generated:start -->", "<!-- personagym-hf:generated:end -->"
DESCRIPTIONS = {
    "full": "one conversation with every field the format flags allow",
    "minimal": "the seed's minimal format: sample_id, initial_query, prompt_trajectory, num_turns",
    "messages": "TRL conversational format: `messages` of {role, content}",
    "query_rewrite": "one query variant (styled or noisy), for query rewriting",
}
TAGS = ["synthetic", "persona", "conversational", "personagym"]
# (upper bound, label) — the Hub's size_categories values
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]
BAR_WIDTH = 20

Splits = dict[str, dict[str, tuple[int, int, list[Path]]]]  # config -> split -> (rows, bytes, shard paths)
# config -> {"features": [...], "splits": [{"name", "num_bytes", "num_examples"}, ...]}: a config's entry of the
# card's `dataset_info`, as YAML holds it (no `datasets` objects, so that an export need not import `datasets`)
Infos = dict[str, dict[str, Any]]


def template_path(name: str = "template.md") -> Path:
    return Path(str(files("personagym_hf.dataset_card") / name))


def size_category(count: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if count < bound), "n>100M")


def data_files(config: str, split_names: list[str]) -> list[dict[str, str]]:
    # Every config in a folder of its own: a reader given `data/` or `data/<config>/` gets one config's rows.
    return [{"split": split, "path": f"data/{config}/{split}-*"} for split in split_names]


def _type_name(feature: Any) -> str:
    """A feature of `dataset_info` (`{"dtype": ...}`, `{"list": ...}` or `{"struct": [...]}`) in words."""
    if isinstance(feature, str):
        return _type_name({"dtype": feature})
    if isinstance(feature, list):
        return _type_name({"struct": feature})
    if "list" in feature:
        return f"list of {_type_name(feature['list'])}"
    if "struct" in feature:
        return "{" + ", ".join(f"{field['name']}: {_type_name(field)}" for field in feature["struct"]) + "}"
    return "JSON object" if feature["dtype"] == "json" else feature["dtype"]


def _table(title: str, key: str, counts: dict[str, int], total: int) -> dict:
    rows = []
    for name, count in counts.items():
        share = count / total if total else 0.0
        rows.append(
            {"name": name, "count": count, "bar": "█" * round(share * BAR_WIDTH) or "▏", "pct": f"{share:.1%}"}
        )
    return {"title": title, "key": key, "rows": rows}


def split_generated(text: str) -> tuple[str, str]:
    """The user's text before and after the generated section of an existing card body."""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        return before.strip("\n"), rest.split(END, 1)[1].strip("\n")
    return "", text.strip("\n")


def user_parts(existing: str | None):
    """(card data, text before, text after the generated section) of an existing card, or fresh data."""
    from huggingface_hub import DatasetCard, DatasetCardData

    if not existing:
        return DatasetCardData(), "", ""
    old = DatasetCard(existing)
    return (old.data, *split_generated(old.text))


def keep_user_parts(card, before: str, after: str):
    """Put the user's text back around a freshly rendered card's generated section."""
    if before or after:
        card.text = "\n\n".join(part for part in (before, card.text.strip("\n"), after) if part) + "\n"
    return card


def dataset_infos(specs: dict[str, dict[str, Any]], splits: Splits) -> Infos:
    """Each config's `dataset_info` entry from its column specs and written splits (empty splits left out)."""
    from .schema import yaml_features

    return {
        config: {
            "features": yaml_features(config_specs),
            "splits": [
                {"name": split, "num_bytes": num_bytes, "num_examples": rows}
                for split, (rows, num_bytes, _paths) in splits[config].items()
                if rows
            ],
        }
        for config, config_specs in specs.items()
    }


def card_dataset_info(infos: Infos) -> dict | list:
    """The card's `dataset_info` value, laid out as `datasets.info.DatasetInfosDict.to_dataset_card_data` does
    (the tests hold them equal): one mapping for a single config, else a list sorted by config name."""
    entries = {config: {"config_name": config, **info} for config, info in infos.items()}
    if len(entries) == 1:
        ((config, entry),) = entries.items()
        return {key: value for key, value in entry.items() if key != "config_name" or config != "default"}
    return [entries[config] for config in sorted(entries)]


def _split_names(info: dict[str, Any]) -> list[str]:
    return [split["name"] for split in info["splits"]]


def render_card(
    infos: Infos,
    statistics: dict[str, Any],
    settings: dict[str, Any],
    *,
    repo_id: str | None = None,
    license: str = "other",
    pretty_name: str = "PersonaGym conversations",
    existing: str | None = None,
):
    """A `DatasetCard` for an exported folder.

    `infos` maps config -> its `dataset_info` entry (features and split sizes); `settings` is the
    `settings` block of `provenance.json`; `existing` is a card whose user-written parts to keep.
    """
    from huggingface_hub import DatasetCard

    from . import __version__

    card_data, before, after = user_parts(existing)
    total = statistics["total_samples"]
    card_data.license = license
    card_data.language = ["en"]
    card_data.task_categories = ["text-generation"]
    card_data.tags = TAGS
    card_data.size_categories = [size_category(total)]
    card_data.pretty_name = pretty_name
    card_data.configs = [
        {
            "config_name": config,
            "data_files": data_files(config, _split_names(info)),
            **({"default": True} if config == "full" else {}),
        }
        for config, info in infos.items()
    ]
    card_data.dataset_info = card_dataset_info(infos)

    distractor = statistics["distractor_stats"]
    from .audit_card import leakage_markdown, tokens_markdown

    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path()),
        pretty_name=pretty_name,
        version=__version__,
        repo_id=repo_id or "NAMESPACE/NAME",
        total_samples=total,
        total_personas=statistics.get("total_personas", 0),
        avg_turns=statistics["avg_turns"],
        noise_pct=f"{distractor['noise_rate']:.1%}",
        split_by=settings["split_by"],
        seed=settings["seed"],
        ratios=settings["ratios"],
        configs=[
            {
                "name": c,
                "default": c == "full",
                "description": DESCRIPTIONS[c],
                "rows": sum(split["num_examples"] for split in infos[c]["splits"]),
            }
            for c in CONFIG_NAMES
            if c in infos
        ],
        schema=[(feature["name"], _type_name(feature)) for feature in infos["full"]["features"]],
        columns={config: [feature["name"] for feature in info["features"]] for config, info in infos.items()},
        splits=[
            {"name": name, **values}
            for name, values in statistics["splits"].items()
            if name in _split_names(infos["full"])
        ],
        tables=[
            _table(
                "Noise layers (noisy versions)",
                "layer",
                distractor["layer_distribution"],
                sum(distractor["layer_distribution"].values()),
            ),
            _table(
                "Noise strategies",
                "strategy",
                distractor["strategy_distribution"],
                sum(distractor["strategy_distribution"].values()),
            ),
            _table("Persona roles (samples)", "role", statistics["persona_distribution"], total),
            _table("Assistant models (samples)", "model", statistics["model_distribution"], total),
        ],
        leakage_section=leakage_markdown(statistics["leakage"]) if "leakage" in statistics else "",
        tokens_section=tokens_markdown(statistics["tokens"]) if statistics.get("tokens") else "",
    )
    return keep_user_parts(card, before, after)


def folder_infos(folder: Path) -> Infos:
    """config -> `dataset_info` entry (features, split sizes), from an exported folder's card, in the order
    of its `configs`."""
    from huggingface_hub import DatasetCard

    data = DatasetCard.load(folder / "README.md").data
    entries = data.get("dataset_info") or []
    entries = [entries] if isinstance(entries, dict) else entries
    by_name = {entry.get("config_name", "default"): entry for entry in entries}
    return {
        config["config_name"]: {"features": by_name[name]["features"], "splits": by_name[name].get("splits") or []}
        for config in data.get("configs") or []
        if (name := config["config_name"]) in by_name
    }


def folder_card(folder: Path, *, repo_id: str | None = None, existing: str | None = None, license: str = "other"):
    """Re-render the card of an exported folder from its own files (README YAML, statistics, provenance),
    e.g. with the repo id for the load snippets, keeping the user-written parts of `existing`."""
    import json

    from huggingface_hub import DatasetCard

    local = DatasetCard.load(folder / "README.md")
    infos = folder_infos(folder)
    statistics = json.loads((folder / "statistics.json").read_text(encoding="utf-8"))
    settings = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))["settings"]
    return render_card(
        infos,
        statistics,
        settings,
        repo_id=repo_id,
        existing=existing or str(local),
        license=license,
        pretty_name=local.data.get("pretty_name") or "PersonaGym conversations",
    )
