"""The one source of truth for a training sample's shape.

`TrainingSample` is the seed's dataclass (its ten fields, in its order). Each field carries its
`datasets` feature spec in `field(metadata=...)`, written in a tiny notation that needs no import:
``"string"``/``"int64"`` are `Value`s, ``"json"`` is `Json()` (free-form dicts whose keys differ from
record to record), ``[x]`` is `List(x)` and a dict is a struct. `features()` turns it into
`datasets.Features` on demand, so importing this module never imports `datasets`. An export needs only
what `datasets` would derive from those features — the Arrow schema with its `huggingface` metadata
(`arrow_schema`) and the card's YAML form (`yaml_features`) — and builds it here, without importing
`datasets` (which an export then never imports: README, Performance); the tests hold the two
equal to what `datasets` gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    import pyarrow as pa

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


def _feature_dict(spec: Any) -> Any:
    """One spec as `datasets.Features.to_dict()` writes it (the Arrow schema's `huggingface` metadata)."""
    if isinstance(spec, list):
        return {"feature": _feature_dict(spec[0]), "_type": "List"}
    if isinstance(spec, dict):
        return {key: _feature_dict(value) for key, value in spec.items()}
    if spec == "json":
        return {"_type": "Json"}
    return {"dtype": spec, "_type": "Value"}


def _arrow_type(spec: Any) -> "pa.DataType":
    import pyarrow as pa

    if isinstance(spec, list):
        return pa.list_(_arrow_type(spec[0]))
    if isinstance(spec, dict):
        return pa.struct([(key, _arrow_type(value)) for key, value in spec.items()])
    if spec == "json":
        return pa.json_()  # what `datasets.Json()` stores: Arrow's JSON extension type over strings
    return pa.type_for_alias(spec)


def arrow_schema(specs: dict[str, Any]) -> "pa.Schema":
    """`features(specs).arrow_schema`, metadata included, without importing `datasets`."""
    import pyarrow as pa

    metadata = {"huggingface": json.dumps({"info": {"features": _feature_dict(specs)}})}
    return pa.schema([(name, _arrow_type(spec)) for name, spec in specs.items()], metadata=metadata)


def _yaml_feature(spec: Any) -> dict[str, Any]:
    if isinstance(spec, list):
        inner = _yaml_feature(spec[0])
        if list(inner) in (["dtype"], ["struct"]):  # as `datasets` simplifies them: `list: string`, `list: [...]`
            inner = next(iter(inner.values()))
        return {"list": inner}
    if isinstance(spec, dict):
        return {"struct": yaml_features(spec)}
    return {"dtype": spec}


def yaml_features(specs: dict[str, Any]) -> list[dict[str, Any]]:
    """The `features` of a card's `dataset_info`, as `datasets.Features._to_yaml_list()` writes them."""
    return [{"name": name, **_yaml_feature(spec)} for name, spec in specs.items()]
