"""The one source of truth for a training sample's shape.

`TrainingSample` is the seed's dataclass (its ten fields, in its order). Each field carries its
`datasets` feature spec in `field(metadata=...)`, written in a tiny notation that needs no import:
``"string"``/``"int64"`` are `Value`s, ``"json"`` is `Json()` (free-form dicts whose keys differ from
record to record), ``[x]`` is `List(x)` and a dict is a struct. `features()` turns it into
`datasets.Features` on demand, so importing this module never imports `datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List

MESSAGE_SPEC = {"role": "string", "content": "string"}
NOISE_SPEC = {"noisy_text": "string", "noise_type": "string", "applied_strategies": ["string"]}


def _spec(spec: Any) -> Any:
    return field(metadata={"feature": spec})


@dataclass
class TrainingSample:
    sample_id: str = _spec("string")
    persona_id: str = _spec("string")
    persona_features: Dict[str, str] = _spec("json")
    original_query: str = _spec("string")
    initial_query: str = _spec("string")
    prompt_trajectory: List[str] = _spec(["string"])
    full_conversation: List[Dict[str, str]] = _spec([MESSAGE_SPEC])
    num_turns: int = _spec("int64")
    noisy_initial_queries: List[Dict[str, Any]] = _spec([NOISE_SPEC])
    metadata: Dict[str, Any] = _spec("json")

    def to_dict(self) -> Dict[str, Any]:
        """Convert to dictionary (field order is the seed's).

        Shallow: nested lists and dicts are the sample's own, not copies (`dataclasses.asdict` deep-copies
        every value and was the single largest cost of an export). Copy before mutating them.
        """
        return {name: getattr(self, name) for name in FIELD_NAMES}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainingSample":
        """Build a sample from `to_dict()` output; unknown keys are an error, missing ones get empty values."""
        unknown = sorted(set(data) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(f"TrainingSample.from_dict: unknown keys {unknown}; expected a subset of {FIELD_NAMES}")
        return cls(**{name: data.get(name, _empty(name)) for name in FIELD_NAMES})


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainingSample))
FEATURE_SPECS: dict[str, Any] = {f.name: f.metadata["feature"] for f in fields(TrainingSample)}


def _empty(name: str) -> Any:
    spec = FEATURE_SPECS[name]
    if isinstance(spec, list):
        return []
    return {"string": "", "int64": 0, "json": {}}[spec]


def to_feature(spec: Any):
    """Turn one spec of the notation above into a `datasets` feature type."""
    import datasets

    if isinstance(spec, list):
        return datasets.List(to_feature(spec[0]))
    if isinstance(spec, dict):
        return {key: to_feature(value) for key, value in spec.items()}
    if spec == "json":
        return datasets.Json()
    return datasets.Value(spec)


def features(specs: dict[str, Any]):
    """`datasets.Features` for a mapping of column name -> spec (see module docstring)."""
    import datasets

    return datasets.Features({name: to_feature(spec) for name, spec in specs.items()})
