"""The safety gate before a push: find strings that look like access tokens or API keys.

Parquet columns are scanned with Arrow's RE2 matcher on the leaf string arrays (lists and structs are
flattened, keeping each value's row), so a big dataset is checked without turning it into Python objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PATTERNS = {
    "Hugging Face token": r"hf_[A-Za-z0-9]{30,}",
    "OpenAI/Anthropic-style API key": r"sk-[A-Za-z0-9_\-]{20,}",
    "GitHub token": r"gh[pousr]_[A-Za-z0-9]{36,}",
    "AWS access key id": r"AKIA[0-9A-Z]{16}",
    "Google API key": r"AIza[0-9A-Za-z_\-]{35}",
    "Slack token": r"xox[abprs]-[A-Za-z0-9\-]{10,}",
}
_ANY = "|".join(f"(?:{pattern})" for pattern in PATTERNS.values())
_COMPILED = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}


@dataclass(frozen=True)
class Finding:
    file: str
    where: str
    kind: str
    redacted: str

    def describe(self) -> str:
        return f"{self.file}, {self.where}: {self.kind} ({self.redacted})"


def redact(secret: str) -> str:
    return f"{secret[:6]}…[{len(secret)} chars]"


def _findings_in_text(text: str, file: str, where: str) -> list[Finding]:
    found = []
    for kind, pattern in _COMPILED.items():
        for match in pattern.finditer(text):
            found.append(Finding(file, where, kind, redact(match.group())))
    return found


def _leaf_strings(array: pa.Array, rows: pa.Array, path: str):
    """(string array, row index of each value, column path) for every string leaf of `array`."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):  # also arrow.json (the Json columns), which is no pa.ExtensionType
        array, kind = array.storage, array.storage.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        yield array, rows, path
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        parents = pc.list_parent_indices(array)
        yield from _leaf_strings(pc.list_flatten(array), pc.take(rows, parents), path + "[]")
    elif pa.types.is_struct(kind):
        for index in range(kind.num_fields):
            yield from _leaf_strings(pc.struct_field(array, [index]), rows, f"{path}.{kind.field(index).name}")


def scan_parquet(path: Path, label: str) -> list[Finding]:
    found: list[Finding] = []
    parquet = pq.ParquetFile(path)
    offset = 0
    for batch in parquet.iter_batches(batch_size=4096):
        rows = pa.array(range(offset, offset + batch.num_rows), pa.int64())
        for name, column in zip(batch.schema.names, batch.columns):
            for strings, row_of, column_path in _leaf_strings(column, rows, name):
                mask = pc.fill_null(pc.match_substring_regex(strings, _ANY), False)
                for value, row in zip(pc.filter(strings, mask).to_pylist(), pc.filter(row_of, mask).to_pylist()):
                    found.extend(_findings_in_text(value, label, f"row {row}, {column_path}"))
        offset += batch.num_rows
    return found


def scan_folder(folder: Path) -> list[Finding]:
    """Every suspicious string in the files a push would upload."""
    found: list[Finding] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        label = path.relative_to(folder).as_posix()
        if path.suffix == ".parquet":
            found.extend(scan_parquet(path, label))
        else:
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                found.extend(_findings_in_text(line, label, f"line {number}"))
    return found
