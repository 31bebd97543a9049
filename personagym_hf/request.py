"""One export, asked for whole: which store, which folder, what each sample becomes (`config.ExportConfig`), how the
folder is laid out (`Outputs`), what is measured beside the rows (`Measures`) and how it runs (`config.RunOptions`).

Built once at the edge — by the command line, the seed's `TrainingDataExporter`, a script — and taken whole by the
layers below, so that every option is declared once and a contradictory combination (a chat template without a
tokenizer, a Ray address without the Ray engine, a timestamped append) is refused where it is made, in one line,
whatever face made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, ExportConfig, RunOptions

AUDIT_MODES = ("auto", "near", "exact")


@dataclass(frozen=True)
class Layout:
    """The files of an export: split into train/validation/test or one train file, with `hf_dataset/` or without,
    and the timestamp of a version written beside the current export (None: the current export)."""

    split: bool
    hf_dataset: bool
    stamp: str | None = None


@dataclass(frozen=True)
class Outputs:
    """How the output folder is laid out. `split` and `hf_dataset` None: as the export already in the folder when
    appending, else as `first` (the command line splits and writes `hf_dataset/`; the seed's `export_samples` does
    neither). `statistics`: write `statistics.json` and `token_usage.json` (the seed writes them in a call of its
    own)."""

    split: bool | None = None
    hf_dataset: bool | None = None
    timestamp: bool = False  # a version beside the current export, its names stamped _YYYYmmdd_HHMMSS
    append: bool = False  # add only new samples to the export already in the folder
    statistics: bool = True
    first: Layout = Layout(split=True, hf_dataset=True)

    def __post_init__(self) -> None:
        if self.timestamp and self.append:
            raise ConfigError(
                "--timestamp writes a version beside the export and --append adds to the export itself: pass one "
                "of them (an append keeps no timestamp)"
            )


@dataclass(frozen=True)
class Measures:
    """What an export measures beside its rows. `audit`: the leakage audit, "near" (exact and near duplicates),
    "exact", "auto" (near) or None (none). `tokenizer`: token budgets for a local tokenizer
    folder or tokenizer.json (or a loaded `measure.tokens.Tokenizer`), rendered with `chat_template` (a Jinja file)
    when given, the rows over `max_length` tokens counted."""

    audit: str | None = "auto"
    tokenizer: Any = None
    chat_template: str | Path | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.audit is not None and self.audit not in AUDIT_MODES:
            raise ConfigError(f"audit: expected one of {list(AUDIT_MODES)} or None, got {self.audit!r}")
        if self.tokenizer is None and (self.chat_template is not None or self.max_length is not None):
            raise ConfigError("--chat-template and --max-length count tokens: pass --tokenizer PATH with them")
        if self.max_length is not None and (
            isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1
        ):
            raise ConfigError(f"max_length: expected an integer >= 1, got {self.max_length!r}")


@dataclass(frozen=True)
class ExportRequest:
    """Everything one export needs but the conversion of records (a collector is code, not a setting).

    `store`: a folder (searched recursively), a .json/.jsonl file or .gz of one, or several of these (None: the
    samples come from the caller, as the seed's `export_samples` gives them); `output`: the export's folder."""

    store: str | Path | tuple[str | Path, ...] | None
    output: Path
    settings: ExportConfig = field(default_factory=ExportConfig)
    outputs: Outputs = Outputs()
    measures: Measures = Measures()
    run: RunOptions = RunOptions()

    def __post_init__(self) -> None:
        store = self.store
        if store is not None and not isinstance(store, (str, Path)):
            store = tuple(store)
            if not store:
                raise ConfigError("store: expected a folder or file of interactions, got none")
        object.__setattr__(self, "store", store)
        object.__setattr__(self, "output", Path(self.output))

    @property
    def stores(self) -> tuple[str | Path, ...]:
        if self.store is None:
            return ()
        return (self.store,) if isinstance(self.store, (str, Path)) else self.store

    def store_name(self) -> str:
        return ", ".join(map(str, self.stores))


__all__ = ["AUDIT_MODES", "ExportRequest", "Layout", "Measures", "Outputs"]
