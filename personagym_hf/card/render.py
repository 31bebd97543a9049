"""The dataset card: a `DatasetCard` rendered from `dataset_card/template.md`.

The YAML carries `configs` (data files per split, `full` as default) and `dataset_info` (features and
split sizes, in the form `datasets` writes: `schema.yaml_features`), which is all `load_dataset(folder)` and
`load_dataset("user/repo")` need. Text a user adds outside the generated section (between the
`personagym-hf:generated` markers), and YAML keys we do not generate, survive a re-render.

`license` must be one of the Hub's identifiers (`dataset_card/hub_licenses.md`, the table of the Hub's
documentation: `huggingface_hub` has no copy of it); none given keeps the card's, else the card has none.
`language` (ISO 639 codes) and `language_details` (BCP-47 tags, when some carry a region) come from the
`language`, `locale` or `lang` of the samples' `persona_features`, most frequent first, unless given.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import Counter
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable

from ..measure.stats import LANGUAGE_KEYS
from ..transform.views import CONFIG_NAMES
from ..wording import plural

START, END = "<!-- personagym-hf:generated:start -->", "<!-- personagym-hf:generated:end -->"
DESCRIPTIONS = {
    "full": "one conversation with every field the format flags allow",
    "minimal": "the seed's minimal format: sample_id, initial_query, prompt_trajectory, num_turns",
    "messages": "TRL conversational format: `messages` of {role, content}",
    "last_turn": "TRL conversational prompt-completion: the conversation up to its last user turn, and the "
    "assistant's answer",
    "query_rewrite": "one query variant (styled or noisy), for query rewriting",
    "rewrite": "TRL conversational prompt-completion for query rewriting: instruction, persona and query; "
    "`original_query`",
}
PROMPT_ONLY_REWRITE = "TRL conversational prompt-only for query rewriting: instruction and query"
LEFT_OUT = {  # config -> (its count in `statistics.json` `configs`, what it left out and why)
    "last_turn": (
        "left_out_samples",
        "sample",
        "whose conversation does not end with an assistant turn after a user turn",
    ),
    "rewrite": ("left_out_variants", "query variant", "of samples without an `original_query`"),
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
LICENSES_URL = "https://huggingface.co/docs/hub/repositories-licenses"
_LANGUAGE_TAG = re.compile(r"([A-Za-z]{2,3})((?:[-_][A-Za-z0-9]{2,8})*)")

logger = logging.getLogger(__name__)


class CardError(ValueError):
    """A card option the Hub would not accept; the message names the value and the fix."""


Splits = dict[str, dict[str, tuple[int, int, list[Path]]]]  # config -> split -> (rows, bytes, shard paths)
# config -> {"features": [...], "splits": [{"name", "num_bytes", "num_examples"}, ...]}: a config's entry of the
# card's `dataset_info`, as YAML holds it (no `datasets` objects, so that an export need not import `datasets`)
Infos = dict[str, dict[str, Any]]


def template_path(name: str = "template.md") -> Path:
    return Path(str(files("personagym_hf.dataset_card") / name))


@cache
def hub_licenses() -> dict[str, str]:
    """The Hub's license identifiers -> full names, from the table shipped in `dataset_card/hub_licenses.md`."""
    licenses = {}
    for line in template_path("hub_licenses.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if line.startswith("|") and len(cells) > 2 and re.fullmatch(r"`[^`]+`", cells[2]):
            licenses[cells[2].strip("`")] = cells[1]
    return licenses


def check_license(license: str | None) -> str | None:
    """`license` if it is one of the Hub's identifiers (or None); else a `CardError` with the closest ones."""
    if license is None or license in hub_licenses():
        return license
    # `cc-by` is a family: its versions (cc-by-4.0, ...) are the identifiers; otherwise the closest spelling.
    versions = [name for name in hub_licenses() if re.fullmatch(rf"{re.escape(license.lower())}-\d[\d.]*", name)]
    near = versions or difflib.get_close_matches(license.lower(), hub_licenses(), n=1, cutoff=0.8)
    hint = f" (did you mean {'one of ' if len(near) > 1 else ''}{', '.join(near)}?)" if near else ""
    raise CardError(f"license {license!r} is not a license identifier of the Hub{hint}; pick one from {LICENSES_URL}")


def language_tag(value: Any) -> str | None:
    """A language code or BCP-47 tag in its usual case (`fr_ca` -> `fr-CA`), or None if `value` is none."""
    if not isinstance(value, str) or not (match := _LANGUAGE_TAG.fullmatch(value.strip())):
        return None
    subtags = [part for part in re.split(r"[-_]", match.group(2)) if part]
    fixed = [part.upper() if len(part) == 2 and part.isalpha() else part.title() if len(part) == 4 else part.lower()
             for part in subtags]  # fmt: skip
    return "-".join([match.group(1).lower(), *fixed])


def check_languages(values: Iterable[str]) -> list[str]:
    """Language tags given by a user, checked; a `CardError` for the first that is not one."""
    tags = []
    for value in values:
        tag = language_tag(value)
        if tag is None:  # e.g. a language's name: no code is longer than 3 letters
            raise CardError(
                f"language {value!r} is not a language code: expected ISO 639 codes such as en, de or ja, "
                "or BCP-47 tags such as en-GB"
            )
        tags.append(tag)
    return list(dict.fromkeys(tags))


def languages_of(features: Iterable[tuple[Any, int]]) -> list[str]:
    """Language tags of (persona_features, number of rows) pairs: grouped by language code, the code with the most
    rows first (`en` and `en-GB` count together), and within a code the tag with the most rows first."""
    counts: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    for feature, rows in features:
        if not isinstance(feature, dict):
            continue
        value = next((feature[key] for key in LANGUAGE_KEYS if feature.get(key)), None)
        tag = language_tag(value)
        if tag is not None:
            counts[tag] += rows
        elif value is not None:
            ignored[str(value)] += rows
    if ignored:
        logger.warning("persona_features values that are not language codes left out of the card: %s",
                       ", ".join(repr(v) for v, _ in ignored.most_common(3)))  # fmt: skip
    by_code: Counter[str] = Counter()
    for tag, rows in counts.items():
        by_code[tag.split("-")[0]] += rows
    order = sorted(
        counts.items(), key=lambda item: (-by_code[item[0].split("-")[0]], item[0].split("-")[0], -item[1], item[0])
    )
    return [tag for tag, _ in order]


def set_languages(card_data, tags: list[str]) -> None:
    """`language` (ISO 639 codes, most frequent first) and, when a tag is more than a code, `language_details`."""
    codes = list(dict.fromkeys(tag.split("-")[0] for tag in tags))
    card_data.language = codes or None
    card_data["language_details"] = tags if any("-" in tag for tag in tags) else None


def folder_languages(folder: Path) -> list[str]:
    """Language tags of an exported folder's rows, from the `persona_features` of its first config that has them."""
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard

    for config in DatasetCard.load(folder / "README.md").data.get("configs") or []:
        paths = sorted({p for item in config.get("data_files") or [] for p in folder.glob(item["path"])})
        if not paths or "persona_features" not in pq.read_schema(paths[0]).names:
            continue
        array = pq.read_table(paths, columns=["persona_features"]).column("persona_features").combine_chunks()
        if isinstance(array.type, pa.BaseExtensionType):  # arrow.json: JSON text
            array = array.storage
        counts = pc.value_counts(array)
        pairs = []
        for entry in counts:  # each distinct persona's features once: JSON text in the Parquet files
            text, rows = entry["values"].as_py(), entry["counts"].as_py()
            pairs.append((orjson.loads(text) if isinstance(text, str) else text, rows))
        return languages_of(pairs)
    return []


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
    from ..schema import yaml_features

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


def left_out_lines(configs: dict[str, dict[str, Any]]) -> list[str]:
    """A sentence per config that left rows out (`views.config_rows`), for under the card's config table."""
    lines = []
    for config, (key, what, why) in LEFT_OUT.items():
        count = (configs.get(config) or {}).get(key)
        if count:
            lines.append(f"`{config}` leaves out {plural(count, what)} {why}.")
    return lines


def _split_names(info: dict[str, Any]) -> list[str]:
    return [split["name"] for split in info["splits"]]


def render_card(
    infos: Infos,
    statistics: dict[str, Any],
    settings: dict[str, Any],
    *,
    repo_id: str | None = None,
    license: str | None = None,
    languages: list[str] | None = None,
    pretty_name: str = "PersonaGym conversations",
    existing: str | None = None,
):
    """A `DatasetCard` for an exported folder.

    `infos` maps config -> its `dataset_info` entry (features and split sizes); `settings` is the
    `settings` block of `provenance.json`; `existing` is a card whose user-written parts to keep, and whose
    license and languages stay when `license` / `languages` are None.
    """
    from huggingface_hub import DatasetCard

    from ..version import __version__

    card_data, before, after = user_parts(existing)
    total = statistics["total_samples"]
    if license is not None:
        card_data.license = check_license(license)
    if languages is not None:
        set_languages(card_data, check_languages(languages))
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
    from .sections import leakage_markdown, secrets_markdown, tokens_markdown, training_markdown
    from .splits import split_summary, splits_markdown

    columns = {config: [feature["name"] for feature in info["features"]] for config, info in infos.items()}

    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path()),
        pretty_name=pretty_name,
        version=__version__,
        repo_id=repo_id or "NAMESPACE/NAME",
        total_samples=total,
        total_personas=statistics.get("total_personas", 0),
        avg_turns=f"{statistics['avg_turns']:.2f}",
        noise_pct=f"{distractor['noise_rate']:.1%}",
        split_by=settings["split_by"],
        split_assignment=settings.get("split_assignment"),
        split_summary=split_summary(settings),
        splits_section=splits_markdown(statistics),
        seed=settings["seed"],
        ratios=settings["ratios"],
        configs=[
            {
                "name": c,
                "default": c == "full",
                "description": (
                    PROMPT_ONLY_REWRITE if c == "rewrite" and "completion" not in columns[c] else DESCRIPTIONS[c]
                ),
                "rows": sum(split["num_examples"] for split in infos[c]["splits"]),
            }
            for c in CONFIG_NAMES
            if c in infos
        ],
        left_out=left_out_lines(statistics.get("configs") or {}),
        schema=[(feature["name"], _type_name(feature)) for feature in infos["full"]["features"]],
        columns=columns,
        splits=[  # rounded, and the noise rate a percentage, as the summary above shows them
            {
                **values,
                "name": name,
                "avg_turns": f"{values['avg_turns']:.2f}",
                "noise_rate": f"{values['noise_rate']:.1%}",
            }
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
        training_section=training_markdown(
            columns,
            {config: _split_names(info) for config, info in infos.items()},
            settings.get("prompts"),
            repo_id or "NAMESPACE/NAME",
        ),
        secrets_section=secrets_markdown(statistics["redacted_secrets"]) if "redacted_secrets" in statistics else "",
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


def folder_card(
    folder: Path,
    *,
    repo_id: str | None = None,
    existing: str | None = None,
    license: str | None = None,
    languages: list[str] | None = None,
):
    """Re-render the card of an exported folder from its own files (README YAML, statistics, provenance),
    e.g. with the repo id for the load snippets, keeping the user-written parts of `existing`. Languages not
    given come from the rows' `persona_features` (when they name none, the card's stay as they are)."""
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
        languages=languages if languages is not None else folder_languages(folder) or None,
        pretty_name=local.data.get("pretty_name") or "PersonaGym conversations",
    )
