"""`InteractionStorage` (the seed's `src.interaction_generator` import path): reading and writing an
upstream interaction store.

Reading streams the files (the index can be stale or missing; the files are the truth). Writing follows
upstream: one pretty-printed JSON file per interaction, written atomically, then `index.json` updated.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

import orjson

from .read.store import BadRecord, Record, discover_paths, iter_file
from .write.files import write_json_atomic

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _index_entry(interaction: dict[str, Any], path: Path) -> dict[str, Any]:
    metadata = interaction.get("metadata") or {}
    return {
        "interaction_id": interaction.get("interaction_id"),
        "persona_id": interaction.get("persona_id"),
        "filepath": path.as_posix(),
        "num_turns": interaction.get("num_turns"),
        "created_at": metadata.get("created_at") or interaction.get("created_at"),
        "query_id": interaction.get("query_id") or metadata.get("query_id"),
    }


class InteractionStorage:
    def __init__(self, path: str | Path = "output/interactions"):
        self.path = Path(path)

    def iter_records(self) -> Iterator[Record | BadRecord]:
        """Every record with its file and position, and every unreadable one as a `BadRecord`."""
        if not self.path.exists():
            return
        for file in discover_paths(self.path):
            yield from iter_file(file)

    def iter_all(self) -> Iterator[dict[str, Any]]:
        """Interaction dicts one at a time; unreadable files and records are logged and skipped."""
        for record in self.iter_records():
            if isinstance(record, BadRecord):
                logger.warning("skipped unreadable record: %s", record.describe())
                continue
            yield record.data

    __iter__ = iter_all

    def load_all(self) -> list[dict[str, Any]]:
        """Every interaction in the store, as a list (prefer `iter_all` for big stores)."""
        return list(self.iter_all())

    def load(self, interaction_id: str) -> dict[str, Any] | None:
        """One interaction by id: through the index when it points at the right file, else by a scan."""
        for entry in self._index().get("interactions", []):
            if entry.get("interaction_id") == interaction_id and entry.get("filepath"):
                candidate = Path(entry["filepath"])
                for path in (candidate, self.path / candidate.name):
                    if path.is_file():
                        for record in iter_file(path):
                            if isinstance(record, Record) and record.data.get("interaction_id") == interaction_id:
                                return record.data
        for interaction in self.iter_all():
            if interaction.get("interaction_id") == interaction_id:
                return interaction
        return None

    def file_for(self, interaction_id: str) -> Path:
        name = _UNSAFE.sub("_", interaction_id)
        return self.path / f"{name if name.startswith('interaction_') else 'interaction_' + name}.json"

    def save(self, interaction: dict[str, Any]) -> Path:
        """Write one interaction atomically, then add it to `index.json` (replacing an entry with its id)."""
        interaction_id = interaction.get("interaction_id")
        if not isinstance(interaction_id, str) or not interaction_id:
            raise ValueError("InteractionStorage.save: the interaction needs a non-empty string 'interaction_id'")
        index_exists = (self.path / INDEX_FILE).exists()
        path = write_json_atomic(self.file_for(interaction_id), interaction)
        if index_exists:
            entries = [e for e in self._index().get("interactions", []) if e.get("interaction_id") != interaction_id]
        else:  # no index (e.g. a crash between file and index write): rebuild it from the files
            entries = [
                _index_entry(r.data, Path(r.source))
                for r in self.iter_records()
                if isinstance(r, Record) and r.data.get("interaction_id") != interaction_id
            ]
        entries.append(_index_entry(interaction, path))
        dates = [e["created_at"] for e in entries if isinstance(e.get("created_at"), str)]
        # The newest interaction's time, not the wall clock: the same store gives the same index.
        write_json_atomic(
            self.path / INDEX_FILE,
            {"interactions": entries, "count": len(entries), "last_updated": max(dates) if dates else None},
        )
        return path

    def _index(self) -> dict[str, Any]:
        try:
            index = orjson.loads((self.path / INDEX_FILE).read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError as e:
            logger.warning("%s: unreadable index, ignored (%s)", self.path / INDEX_FILE, e)
            return {}
        return index if isinstance(index, dict) else {}


__all__ = ["InteractionStorage"]
