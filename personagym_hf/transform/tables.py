"""Sample dicts -> one Arrow table per dataset config, built column by column.

Each field is converted to Arrow once per batch, not once per config: `full` and `minimal` select
columns of the same arrays, `messages` renames one, `query_rewrite` and `rewrite` take the persona columns by
row index, and `last_turn` cuts each conversation's messages (already Arrow) into its prompt and completion with
one `take` each. The chat configs' texts come from `views.ChatViews`, whose row-by-row form the tests hold equal
to these tables, as `views.query_rewrite_rows` (which the ppopt JSONL uses) is held equal to `query_rewrite`. The
schemas are those of the configs' `datasets.Features` (`schema.arrow_schema`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import orjson
import pyarrow as pa

from ..config import Prompts
from ..schema import FEATURE_SPECS, arrow_schema
from .views import QUERY_VARIANT_COLUMNS, SOURCE_FIELD, ChatViews, config_specs, last_turn_cut, query_variants

# Columns a config's table makes itself (from the samples), not taken from a sample field's Arrow array.
MADE = {
    "query_rewrite": QUERY_VARIANT_COLUMNS,
    "rewrite": ("variant", "noise_type", "prompt", "completion"),
    "last_turn": ("prompt", "completion"),
}
ROW_TAKEN = ("query_rewrite", "rewrite", "last_turn")  # configs whose rows are not the samples one for one


class ViewTables:
    def __init__(self, flags: dict[str, bool], configs: Iterable[str] | None = None, prompts: Prompts | None = None):
        specs = config_specs(flags)
        self.configs = list(configs or specs)
        self.schemas = {config: arrow_schema(specs[config]) for config in self.configs}
        self.field_types = {field.name: field.type for field in arrow_schema(FEATURE_SPECS)}
        self.views = ChatViews(prompts or Prompts(), flags["include_persona"])
        # The sample fields the configs' columns are taken from (the rows of `ROW_TAKEN` are made from the samples)
        needed = set()
        for config in self.configs:
            needed.update(SOURCE_FIELD.get(name, name) for name in self.schemas[config].names)
            needed.difference_update(MADE.get(config, ()))
        if "last_turn" in self.configs:
            needed.add("full_conversation")
        self.fields = [name for name in FEATURE_SPECS if name in needed]

    def build(self, samples: list[dict]) -> dict[str, pa.Table]:
        columns: dict[str, pa.Array] = {}
        for name in self.fields:
            values = [sample[name] for sample in samples]
            if FEATURE_SPECS[name] == "json":  # Json() is stored as JSON text
                values = [orjson.dumps(value).decode() for value in values]
            columns[name] = pa.array(values, type=self.field_types[name])
        tables = {}
        for config in self.configs:
            schema = self.schemas[config]
            if config == "query_rewrite":
                tables[config] = self._query_rewrite(samples, columns, schema)
            elif config == "rewrite":
                tables[config] = self._rewrite(samples, columns, schema)
            elif config == "last_turn":
                tables[config] = self._last_turn(samples, columns, schema)
            else:
                arrays = [columns[SOURCE_FIELD.get(name, name)] for name in schema.names]
                tables[config] = pa.Table.from_arrays(arrays, schema=schema)
        return tables

    @staticmethod
    def _query_rewrite(samples: list[dict], columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
        """Per sample: the styled query, then each noisy version (see `views.query_rewrite_rows`)."""
        parents, variants, queries, noise_types, strategies = [], [], [], [], []
        for index, sample in enumerate(samples):
            parents.append(index)
            variants.append("styled")
            queries.append(sample["initial_query"])
            noise_types.append("none")
            strategies.append([])
            for number, noisy in enumerate(sample["noisy_initial_queries"]):
                parents.append(index)
                variants.append(f"noisy_{number}")
                queries.append(noisy["noisy_text"])
                noise_types.append(noisy["noise_type"])
                strategies.append(noisy["applied_strategies"])
        rows = pa.array(parents, pa.int64())
        values = dict(zip(QUERY_VARIANT_COLUMNS, (variants, queries, noise_types, strategies)))
        built = {name: pa.array(values[name], schema.field(name).type) for name in QUERY_VARIANT_COLUMNS}
        arrays = [built[name] if name in built else _no_bitmap(columns[name].take(rows)) for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _rewrite(self, samples: list[dict], columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
        """Per sample with a target: a row per query variant, its prompt the system text (made once per sample) and
        the query, its completion the `original_query` (`views.ChatViews.rewrite`). The message lists are built
        from flat role and content arrays, not from Python dicts."""
        parents, variants, noise_types = [], [], []
        prompt = _Messages()
        completion = _Messages()
        views = self.views
        for index, sample in enumerate(samples):
            if not views.has_rewrite(sample):
                continue
            system, target = views.rewrite_system(sample), views.rewrite_target(sample)
            for variant, query, noise_type, _strategies in query_variants(sample):
                parents.append(index)
                variants.append(variant)
                noise_types.append(noise_type)
                if system:
                    prompt.add("system", system)
                prompt.add("user", query)
                prompt.end()
                if target is not None:
                    completion.add("assistant", target)
                    completion.end()
        rows = pa.array(parents, pa.int64())
        built = {
            "variant": pa.array(variants, pa.string()),
            "noise_type": pa.array(noise_types, pa.string()),
            "prompt": prompt.array(schema.field("prompt").type),
        }
        if "completion" in schema.names:
            built["completion"] = completion.array(schema.field("completion").type)
        arrays = [built[name] if name in built else _no_bitmap(columns[name].take(rows)) for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)

    @staticmethod
    def _last_turn(samples: list[dict], columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
        """Per sample that ends with an assistant turn after a user turn (`views.last_turn_cut`): its messages up to
        the last user message, and the rest, taken from the `full_conversation` array by index."""
        kept, cuts = [], []
        for index, sample in enumerate(samples):
            cut = last_turn_cut(sample["full_conversation"])
            if cut is not None:
                kept.append(index)
                cuts.append(cut)
        conversations = columns["full_conversation"]
        offsets = conversations.offsets.to_numpy()
        rows = np.array(kept, dtype=np.int64)
        starts = offsets[rows].astype(np.int64)
        middles = starts + np.array(cuts, dtype=np.int64)
        ends = offsets[rows + 1].astype(np.int64)
        messages = conversations.values
        built = {
            "prompt": _list_take(messages, starts, middles, schema.field("prompt").type),
            "completion": _list_take(messages, middles, ends, schema.field("completion").type),
        }
        taken = pa.array(rows, pa.int64())
        arrays = [built[name] if name in built else _no_bitmap(columns[name].take(taken)) for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)


class _Messages:
    """A list<struct<role, content>> column built row by row from flat lists."""

    def __init__(self) -> None:
        self.roles: list[str] = []
        self.contents: list[str] = []
        self.offsets: list[int] = [0]

    def add(self, role: str, content: str) -> None:
        self.roles.append(role)
        self.contents.append(content)

    def end(self) -> None:
        self.offsets.append(len(self.roles))

    def array(self, type: pa.DataType) -> pa.Array:
        values = pa.StructArray.from_arrays(
            [pa.array(self.roles, pa.string()), pa.array(self.contents, pa.string())], names=["role", "content"]
        )
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), values, type=type)


def _list_take(values: pa.Array, starts: np.ndarray, stops: np.ndarray, type: pa.DataType) -> pa.Array:
    """Lists of `values[starts[i]:stops[i]]`: one `take` of every row's range, and their offsets."""
    lengths = stops - starts
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    # index of every element: its row's start, plus its place in the row
    indices = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    taken = values.take(pa.array(indices, pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _no_struct_bitmap(taken), type=type)


def _no_struct_bitmap(array: pa.StructArray) -> pa.StructArray:
    """A struct array of strings without nulls, without the all-valid bitmaps `take` gives it and its children
    (see `_no_bitmap`)."""
    if array.null_count:
        return array
    children = [_no_bitmap(array.field(index)) for index in range(array.type.num_fields)]
    return pa.StructArray.from_arrays(children, fields=list(array.type))


def _no_bitmap(array: pa.Array) -> pa.Array:
    """A string (or JSON) array without nulls, minus the all-valid bitmap `take` gives it. An Arrow IPC round
    trip drops that bitmap, so without this a table's `nbytes` (the card's `num_bytes`) would depend on
    whether it went through a worker process."""
    if array.null_count or array.buffers()[0] is None:
        return array
    if isinstance(array, pa.ExtensionArray):
        return pa.ExtensionArray.from_storage(array.type, _no_bitmap(array.storage))
    return pa.Array.from_buffers(array.type, len(array), [None, *array.buffers()[1:]], 0, array.offset)
