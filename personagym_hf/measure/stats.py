"""Dataset statistics as a mergeable accumulator: `add(sample, split)`, `merge(other)`, `to_dict()`.

Works on sample dicts (`TrainingSample.to_dict()` or a row of an earlier export, whose fields may be
limited by the format flags), so it reads every field with a default.

`created_at` is the newest `metadata.created_at` among the samples, not the wall clock: the same data
gives the same statistics file, byte for byte, and a re-push of unchanged data changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..config import GRID_SPLITS, SPLIT_NAMES

ORDER = {name: number for number, name in enumerate(SPLIT_NAMES + GRID_SPLITS)}  # splits listed in this order

LANGUAGE_KEYS = ("language", "locale", "lang")  # persona_features keys that name a persona's language


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _ranked(counter: Counter) -> dict[str, int]:
    """Most frequent first, ties by name: a stable order."""
    return dict(sorted(counter.items(), key=lambda item: (-item[1], str(item[0]))))


@dataclass
class SplitStats:
    samples: int = 0
    turns: int = 0
    trajectory_prompts: int = 0
    noisy: int = 0
    personas: set[str] = field(default_factory=set)

    def merge(self, other: "SplitStats") -> None:
        self.samples += other.samples
        self.turns += other.turns
        self.trajectory_prompts += other.trajectory_prompts
        self.noisy += other.noisy
        self.personas |= other.personas


@dataclass
class StatsAccumulator:
    splits: dict[str, SplitStats] = field(default_factory=lambda: {name: SplitStats() for name in SPLIT_NAMES})
    layers: Counter = field(default_factory=Counter)
    strategies: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    created_at: str | None = None
    languages: Counter = field(default_factory=Counter)  # persona_features language values, for the card
    held_out: SplitStats = field(default_factory=SplitStats)  # samples in no split (`split_by: grid`)
    redactions: Counter = field(default_factory=Counter)  # secrets redacted, by kind (transform/redact.py)

    @classmethod
    def of_splits(cls, names: tuple[str, ...]) -> "StatsAccumulator":
        """Statistics that list `names` even when a split gets no sample."""
        return cls(splits={name: SplitStats() for name in names})

    def hold_out(self, sample: dict) -> None:
        """A sample in no split: counted in the store's figures, not in any split's."""
        self._add(sample, self.held_out)

    def add(self, sample: dict, split: str) -> None:
        self._add(sample, self.splits.setdefault(split, SplitStats()))

    def _add(self, sample: dict, part: SplitStats) -> None:
        part.samples += 1
        part.turns += sample.get("num_turns", 0)
        part.trajectory_prompts += len(sample.get("prompt_trajectory") or ())
        if sample.get("persona_id"):
            part.personas.add(sample["persona_id"])
        noisy = sample.get("noisy_initial_queries") or []
        if noisy:
            part.noisy += 1
        for entry in noisy:
            self.layers[entry.get("noise_type", "unknown")] += 1
            self.strategies.update(entry.get("applied_strategies") or ())
        features = sample.get("persona_features")
        if features is not None:
            self.roles[str(features.get("role") or "unknown")] += 1
            language = next((features[key] for key in LANGUAGE_KEYS if features.get(key)), None)
            if isinstance(language, str):
                self.languages[language] += 1
        metadata = sample.get("metadata") or {}
        model = metadata.get("assistant_model")
        if isinstance(model, dict) and model.get("model"):
            self.models[f"{model.get('provider') or 'unknown'}/{model['model']}"] += 1
        created = metadata.get("created_at")
        if isinstance(created, str) and (self.created_at is None or created > self.created_at):
            self.created_at = created

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        for name, part in other.splits.items():
            self.splits.setdefault(name, SplitStats()).merge(part)
        self.held_out.merge(other.held_out)
        self.layers.update(other.layers)
        self.strategies.update(other.strategies)
        self.roles.update(other.roles)
        self.models.update(other.models)
        self.languages.update(other.languages)
        self.redactions.update(other.redactions)
        if other.created_at and (self.created_at is None or other.created_at > self.created_at):
            self.created_at = other.created_at
        return self

    def __add__(self, other: "StatsAccumulator") -> "StatsAccumulator":
        return StatsAccumulator().merge(self).merge(other)

    def ordered(self) -> dict[str, SplitStats]:
        """The splits in a fixed order (train, validation, test, the grid's), whatever order chunks brought them in."""
        return dict(sorted(self.splits.items(), key=lambda item: (ORDER.get(item[0], len(ORDER)), item[0])))

    def to_state(self) -> dict[str, Any]:
        """Everything `to_dict` is computed from, exactly (persona ids included), as JSON: an append starts
        from the earlier export's state, since its rows may lack the fields (format flags) to recount it."""
        state = {
            "splits": {name: _part_state(part) for name, part in self.ordered().items()},
            "layers": dict(sorted(self.layers.items())),
            "strategies": dict(sorted(self.strategies.items())),
            "roles": dict(sorted(self.roles.items())),
            "models": dict(sorted(self.models.items())),
            "created_at": self.created_at,
            "languages": dict(sorted(self.languages.items())),
            **({"redactions": dict(sorted(self.redactions.items()))} if self.redactions else {}),
        }
        if self.held_out.samples:
            state["held_out"] = _part_state(self.held_out)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "StatsAccumulator":
        splits = {name: _part_of(part) for name, part in state["splits"].items()}
        return cls(
            splits,
            Counter(state["layers"]),
            Counter(state["strategies"]),
            Counter(state["roles"]),
            Counter(state["models"]),
            state["created_at"],
            Counter(state.get("languages") or {}),
            _part_of(state["held_out"]) if "held_out" in state else SplitStats(),
            Counter(state.get("redactions") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The statistics. The store's figures count every sample, those held out too (`held_out`:
        `samples_by_split` and `held_out` sum to `total_samples`); each split's, its own."""
        splits = self.ordered()
        every = [*splits.values(), self.held_out]
        total = sum(part.samples for part in every)
        turns = sum(part.turns for part in every)
        prompts = sum(part.trajectory_prompts for part in every)
        noisy = sum(part.noisy for part in every)
        personas = set().union(*(part.personas for part in every))
        return {
            "total_samples": total,
            "samples_by_split": {name: part.samples for name, part in splits.items()},
            "held_out": self.held_out.samples,
            "avg_turns": round(turns / total, 4) if total else 0.0,
            "avg_trajectory_length": round(prompts / total, 4) if total else 0.0,
            "distractor_stats": {
                "samples_with_noise": noisy,
                "noise_rate": _rate(noisy, total),
                "layer_distribution": _ranked(self.layers),
                "strategy_distribution": _ranked(self.strategies),
            },
            "persona_distribution": _ranked(self.roles),
            "model_distribution": _ranked(self.models),
            "total_personas": len(personas),
            "splits": {
                name: {
                    "samples": part.samples,
                    "personas": len(part.personas),
                    "avg_turns": round(part.turns / part.samples, 4) if part.samples else 0.0,
                    "noise_rate": _rate(part.noisy, part.samples),
                }
                for name, part in splits.items()
            },
            "created_at": self.created_at,
        }


def _part_state(part: SplitStats) -> dict[str, Any]:
    return {
        "samples": part.samples,
        "turns": part.turns,
        "trajectory_prompts": part.trajectory_prompts,
        "noisy": part.noisy,
        "personas": sorted(part.personas),
    }


def _part_of(state: dict[str, Any]) -> SplitStats:
    personas = set(state["personas"])
    return SplitStats(state["samples"], state["turns"], state["trajectory_prompts"], state["noisy"], personas)
