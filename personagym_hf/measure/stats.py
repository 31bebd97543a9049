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

from ..config import SPLIT_NAMES

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

    def add(self, sample: dict, split: str) -> None:
        part = self.splits.setdefault(split, SplitStats())
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
        self.layers.update(other.layers)
        self.strategies.update(other.strategies)
        self.roles.update(other.roles)
        self.models.update(other.models)
        self.languages.update(other.languages)
        if other.created_at and (self.created_at is None or other.created_at > self.created_at):
            self.created_at = other.created_at
        return self

    def __add__(self, other: "StatsAccumulator") -> "StatsAccumulator":
        return StatsAccumulator().merge(self).merge(other)

    def to_state(self) -> dict[str, Any]:
        """Everything `to_dict` is computed from, exactly (persona ids included), as JSON: an append starts
        from the earlier export's state, since its rows may lack the fields (format flags) to recount it."""
        return {
            "splits": {
                name: {
                    "samples": part.samples,
                    "turns": part.turns,
                    "trajectory_prompts": part.trajectory_prompts,
                    "noisy": part.noisy,
                    "personas": sorted(part.personas),
                }
                for name, part in self.splits.items()
            },
            "layers": dict(sorted(self.layers.items())),
            "strategies": dict(sorted(self.strategies.items())),
            "roles": dict(sorted(self.roles.items())),
            "models": dict(sorted(self.models.items())),
            "created_at": self.created_at,
            "languages": dict(sorted(self.languages.items())),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "StatsAccumulator":
        splits = {
            name: SplitStats(
                part["samples"], part["turns"], part["trajectory_prompts"], part["noisy"], set(part["personas"])
            )
            for name, part in state["splits"].items()
        }
        return cls(
            splits,
            Counter(state["layers"]),
            Counter(state["strategies"]),
            Counter(state["roles"]),
            Counter(state["models"]),
            state["created_at"],
            Counter(state.get("languages") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        total = sum(part.samples for part in self.splits.values())
        turns = sum(part.turns for part in self.splits.values())
        prompts = sum(part.trajectory_prompts for part in self.splits.values())
        noisy = sum(part.noisy for part in self.splits.values())
        personas = set().union(*(part.personas for part in self.splits.values()))
        return {
            "total_samples": total,
            "samples_by_split": {name: part.samples for name, part in self.splits.items()},
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
                for name, part in self.splits.items()
            },
            "created_at": self.created_at,
        }
