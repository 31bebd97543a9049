"""Sample dicts -> one Arrow table per dataset config, built column by column.

Each field is converted to Arrow once per batch, not once per config: `full` and `minimal` select
columns of the same arrays, `messages` renames one, and `query_rewrite` takes the persona columns by
row index. This is the columnar twin of `views.query_rewrite_rows` (which the ppopt JSONL uses); the
tests check that the two agree. The schemas are those of the configs' `datasets.Features` (`schema.arrow_schema`).
"""

from __future__ import annotations

from typing import Iterable

import orjson
import pyarrow as pa

from ..schema import FEATURE_SPECS, arrow_schema
from .views import QUERY_VARIANT_COLUMNS, SOURCE_FIELD, config_specs


class ViewTables:
    def __init__(self, flags: dict[str, bool], configs: Iterable[str] | None = None):
        specs = config_specs(flags)
        self.configs = list(configs or specs)
        self.schemas = {config: arrow_schema(specs[config]) for config in self.configs}
        self.field_types = {field.name: field.type for field in arrow_schema(FEATURE_SPECS)}
        # The sample fields the configs' columns are taken from (the query variants are made from the samples)
        needed = {SOURCE_FIELD.get(name, name) for config in self.configs for name in self.schemas[config].names}
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


def _no_bitmap(array: pa.Array) -> pa.Array:
    """A string (or JSON) array without nulls, minus the all-valid bitmap `take` gives it. An Arrow IPC round
    trip drops that bitmap, so without this a table's `nbytes` (the card's `num_bytes`) would depend on
    whether it went through a worker process."""
    if array.null_count or array.buffers()[0] is None:
        return array
    if isinstance(array, pa.ExtensionArray):
        return pa.ExtensionArray.from_storage(array.type, _no_bitmap(array.storage))
    return pa.Array.from_buffers(array.type, len(array), [None, *array.buffers()[1:]], 0, array.offset)
