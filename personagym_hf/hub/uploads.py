"""What a push sends, and what it finds already on the Hub.

A push that stops half way (killed, or its commit kept failing) leaves the shards it uploaded in the repo's LFS
storage. Run again, it plans the same files, and the LFS batch request that `huggingface_hub` makes before
uploading answers without an upload action for every object the Hub already holds, so the library sends only the
rest and the push makes one commit. `stored_on_hub` asks that batch endpoint first, so that the push can say how
much it reused; `UploadFile` and `UploadProgress` count the bytes the HTTP client actually reads for the uploads,
for one progress bar over them and for the summary.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class UploadStats:
    """Bytes of the files a push sends, and of those it found on the Hub (unchanged, or stored by an earlier run)."""

    sent: int = 0
    reused: int = 0
    reused_files: int = 0
    stored: set[str] = field(default_factory=set)  # paths whose content the Hub's LFS storage held before the push


class UploadProgress:
    """Bytes sent per file (the most of it read so far: a retried request reads it again), drawn as one bar."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.sent: dict[str, int] = {}
        self.stored: set[str] = set()  # paths whose content the Hub held before the first attempt
        self._lock = threading.Lock()
        self._bar = None
        self._files: list[UploadFile] = []

    def start(self, total: int) -> None:
        if self.enabled and self._bar is None and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="Uploading", unit="B", unit_scale=True, dynamic_ncols=True, leave=False)

    def open(self, path: Path, key: str) -> UploadFile:
        file = UploadFile(path, self, key)
        self._files.append(file)
        return file

    def advance(self, key: str, position: int) -> None:
        with self._lock:
            delta = position - self.sent.get(key, 0)
            if delta > 0:
                self.sent[key] = position
                if self._bar is not None:
                    self._bar.update(delta)

    def close(self) -> None:
        for file in self._files:
            file.close()
        self._files.clear()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class UploadFile(io.BufferedReader):
    """A local file handed to `CommitOperationAdd` that tells `UploadProgress` how far an upload has read it.

    Only reads of a given size count: the HTTP client streams an upload in chunks, while the library's own
    whole-file reads (the git hash and the inline content of small files) are not LFS uploads.
    """

    def __init__(self, path: Path, progress: UploadProgress, key: str) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._progress, self._key = progress, key
        self.counting = False  # on once CommitOperationAdd has hashed the file

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if self.counting and data and size is not None and size >= 0:
            self._progress.advance(self._key, self.tell())
        return data


def stored_on_hub(api, repo_id: str, revision: str, operations: list, token: str | bool | None) -> set[str]:
    """Paths of `operations` (CommitOperationAdd) whose content the repo's LFS storage already holds."""
    from huggingface_hub.lfs import post_lfs_batch_info

    if not operations:
        return set()
    actions, _errors, _transfer = post_lfs_batch_info(
        [op.upload_info for op in operations],
        token=token if isinstance(token, str) else None,
        repo_type="dataset",
        repo_id=repo_id,
        revision=revision,
        endpoint=api.endpoint,
    )
    held = {action["oid"] for action in actions if not action.get("actions")}
    return {op.path_in_repo for op in operations if op.upload_info.sha256.hex() in held}
