"""What an export was made with (`.personagym-export.json` in its folder), and what an append checks.

An append adds samples to the rows of an earlier export, so it must be made exactly as that export was:
the same layout (split or not, with `hf_dataset/` or not), the same format flags (or rows of two shapes
would share a file), the same split settings (or a persona would land in two splits) and, with `hf_dataset/`, the
same prompt settings (or the `rewrite` config would hold rows of two prompts). The manifest
records these, with the schema version, the collector and the statistics' exact state (the rows may lack
the fields to recount them); an append reads it first and refuses, in one line, what would not fit.

Exports made before the manifest existed are read as they are: the layout from the files present, the
settings from `hf_dataset/provenance.json` when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from ..config import FILE_PREFIX, SPLIT_NAMES, ExportConfig
from ..request import Layout

MANIFEST_FILE = ".personagym-export.json"
SCHEMA_VERSION = 1
SPLIT_SETTINGS = {
    "seed": "experiment.seed",
    "split_by": "training_data.split_by",
    "split_assignment": "training_data.split_assignment",
    "ratios": "training_data.split",
}
# A setting an earlier version did not record: how it made its exports.
UNRECORDED = {"split_assignment": "hashed"}


class AppendError(ValueError):
    """An append that would not fit the export already in the folder."""


@dataclass
class Earlier:
    """The export already in a folder, as far as an append needs to know it."""

    layout: Layout
    settings: dict[str, Any] | None
    collector: str | None
    schema_version: int | None
    statistics_state: dict[str, Any] | None
    split_files: dict[str, str]  # split -> JSON file name (its JSONL is beside it)
    assignment: dict[str, Any] | None = None  # each group key's split (`transform.assign.Assignment.to_state`)
    held_out: tuple[str, ...] = ()  # ids of the samples in no split (`split_by: grid`)


def settings_of(cfg: ExportConfig) -> dict[str, Any]:
    settings = {"seed": cfg.seed, "split_by": cfg.split_by, "ratios": cfg.ratios, "format": cfg.format}
    if cfg.split_by != "sample":  # how groups are given splits (sample splits are always hashed)
        settings["split_assignment"] = cfg.split_assignment
    settings["prompts"] = cfg.prompts.to_dict()
    if cfg.redact_secrets:  # absent: not redacted (and the bytes of an export that does not redact are unchanged)
        settings["redact_secrets"] = True
    return settings


def collector_name(convert: Callable | None) -> str | None:
    """`module:Class` of a custom collector whose bound method converts, `module:function` of a conversion function;
    None for the built-in conversion."""
    if convert is None:
        return None
    owner = getattr(convert, "__self__", None)
    if owner is None:  # a function
        name = f"{getattr(convert, '__module__', None)}:{getattr(convert, '__qualname__', type(convert).__name__)}"
        return None if name == "personagym_hf.transform.collect:interaction_to_sample" else name
    cls = type(owner)
    if cls.__module__ == "personagym_hf.training_data" and cls.__qualname__ == "TrainingDataCollector":
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def manifest(
    layout: Layout,
    cfg: ExportConfig,
    collector: str | None,
    fingerprint: str,
    split_files: dict[str, str],
    statistics_state: dict[str, Any],
    assignment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from ..version import __version__

    document = {
        "generator": "personagym-hf",
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "layout": {"split": layout.split, "hf_dataset": layout.hf_dataset, "timestamp": layout.stamp},
        "settings": settings_of(cfg),
        "collector": collector,
        "fingerprint": fingerprint,
        "split_files": split_files,
        "statistics_state": statistics_state,
    }
    if assignment is not None:
        document["assignment"] = assignment
    return document


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as e:
        raise AppendError(f"{path}: cannot append: the manifest is damaged ({e}); rebuild with --no-append") from None
    if not isinstance(data, dict):
        raise AppendError(f"{path}: cannot append: the manifest is not a JSON object; rebuild with --no-append")
    return data


def read_earlier(folder: Path) -> Earlier | None:
    """The export in `folder`, or None when there is none."""
    data = _load(folder / MANIFEST_FILE)
    if data is not None:
        try:
            layout = data["layout"]
            return Earlier(
                Layout(bool(layout["split"]), bool(layout["hf_dataset"]), layout.get("timestamp")),
                data["settings"],
                data.get("collector"),
                data.get("schema_version"),
                data.get("statistics_state"),
                dict(data["split_files"]),
                data.get("assignment"),
                tuple(data.get("held_out") or ()),
            )
        except (KeyError, TypeError) as e:
            raise AppendError(
                f"{folder / MANIFEST_FILE}: cannot append: the manifest lacks {e}; rebuild with --no-append"
            ) from None
    names = {split: f"{FILE_PREFIX[split]}_samples.json" for split in SPLIT_NAMES}  # exports before the manifest
    present = {s: n for s, n in names.items() if (folder / n).exists() or (folder / n).with_suffix(".jsonl").exists()}
    if not present:
        return None
    provenance = _load(folder / "hf_dataset" / "provenance.json") or {}
    split = "validation" in present or "test" in present
    return Earlier(
        Layout(split, (folder / "hf_dataset" / "README.md").exists()),
        provenance.get("settings"),
        None,
        None,
        None,
        {s: names[s] for s in (SPLIT_NAMES if split else ("train",))},
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def check_append(
    folder: Path,
    earlier: Earlier,
    cfg: ExportConfig,
    split: bool | None,
    hf_dataset: bool | None,
    collector: str | None,
) -> Layout:
    """The layout of an append into `earlier` (None: as the earlier export); raises `AppendError` on a misfit."""
    where = f"{folder}: cannot append"
    if earlier.schema_version not in (None, SCHEMA_VERSION):
        raise AppendError(
            f"{where}: the export there has schema version {earlier.schema_version}, this version writes "
            f"{SCHEMA_VERSION}; rebuild with --no-append"
        )
    if split is not None and split != earlier.layout.split:
        there, now = (
            ("split into train/validation/test", "one train file")
            if earlier.layout.split
            else (
                "one train file",
                "split into train/validation/test",
            )
        )
        raise AppendError(
            f"{where}: the export there is {there} and this run asks for {now}; append with the same layout "
            f"({'without' if earlier.layout.split else 'with'} --no-split), or rebuild with --no-append"
        )
    if hf_dataset is not None and hf_dataset != earlier.layout.hf_dataset:
        there = "has" if earlier.layout.hf_dataset else "has no"
        raise AppendError(
            f"{where}: the export there {there} hf_dataset/ and this run asks for the other; append "
            f"{'without' if earlier.layout.hf_dataset else 'with'} --no-hf-dataset, or rebuild with --no-append"
        )
    if earlier.settings is not None:
        now = settings_of(cfg)
        flags = [
            f"{name}: {_flag(earlier.settings['format'].get(name, True))} there, {_flag(value)} now"
            for name, value in now["format"].items()
            if earlier.settings.get("format", {}).get(name, value) != value
        ]
        if flags:
            raise AppendError(
                f"{where}: format flags differ from the export there ({'; '.join(flags)}); restore them in "
                "training_data.format, or rebuild with --no-append"
            )
        def there(key: str) -> Any:
            return earlier.settings.get(key, UNRECORDED.get(key, now.get(key)))

        differ = [
            f"{SPLIT_SETTINGS[key]}: {_show(there(key))} there, {_show(now[key])} now"
            for key in SPLIT_SETTINGS
            if key in now and there(key) != now[key]
        ]
        if differ:
            raise AppendError(
                f"{where}: split settings differ from the export there ({'; '.join(differ)}), so samples would "
                "change split; restore them, or rebuild with --no-append"
            )
        redacted = bool(earlier.settings.get("redact_secrets", False))  # an export before the setting: false
        if redacted != cfg.redact_secrets:
            flag = "--redact-secrets" if redacted else "--no-redact-secrets"
            raise AppendError(
                f"{where}: the export there was made {'with' if redacted else 'without'} redact_secrets, so its rows "
                f"and the new ones would differ; append with {flag}, or rebuild with --no-append"
            )
    grouped = cfg.split_by != "sample" and not (cfg.split_by == "persona" and cfg.split_assignment == "hashed")
    if grouped and earlier.layout.split and earlier.assignment is None:
        raise AppendError(
            f"{where}: the export there was made by a version that did not record the split of each group, which "
            f"split_by {cfg.split_by} with split_assignment {cfg.split_assignment} needs to keep them; rebuild with "
            "--no-append"
        )
    if earlier.settings is not None and earlier.layout.hf_dataset:
        _check_prompts(where, earlier.settings.get("prompts"), settings_of(cfg)["prompts"])
    if earlier.collector != collector:
        raise AppendError(
            f"{where}: the export there was converted with {earlier.collector or 'the built-in conversion'}, this "
            f"run with {collector or 'the built-in conversion'}; use the same --collector, or rebuild with --no-append"
        )
    return Layout(earlier.layout.split, earlier.layout.hf_dataset)


def _check_prompts(where: str, there: dict[str, str] | None, now: dict[str, str]) -> None:
    """The chat configs' texts (`training_data.prompts`) of an export with `hf_dataset/`: its `rewrite` rows were
    written with those there, so new rows must be too."""
    if there is None:
        raise AppendError(
            f"{where}: the export there was made before the last_turn and rewrite configs (its hf_dataset/ has "
            "none); rebuild with --no-append"
        )
    differ = [
        f"training_data.prompts.{key}: {there.get(key)!r} there, {value!r} now"
        for key, value in now.items()
        if there.get(key) != value
    ]
    if differ:
        raise AppendError(
            f"{where}: prompt settings differ from the export there ({'; '.join(differ)}), so its rewrite rows would "
            "have two prompts; restore them in training_data.prompts, or rebuild with --no-append"
        )


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(f"{v:g}" for v in value.values())
    return str(value)
