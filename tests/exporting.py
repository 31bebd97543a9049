"""`export_store` with the keywords the tests use, turned into the one request the library takes
(`personagym_hf.request.ExportRequest`): so each test says only what it varies. And `snapshot`, an output folder's
bytes by file, to compare two exports (or one before and after a run) byte for byte."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from personagym_hf.config import ExportConfig, RunOptions
from personagym_hf.request import ExportRequest, Measures, Outputs
from personagym_hf.run import job


def export_store(
    store: Any,
    out: str | Path,
    cfg: ExportConfig,
    convert,
    *,
    split: bool | None = True,
    hf_dataset: bool | None = True,
    append: bool = False,
    use_timestamp: bool = False,
    num_proc: int | None = None,
    options: RunOptions | None = None,
    wait: bool = False,
    audit: str | None = "auto",
    tokenizer: Any = None,
    chat_template: Any = None,
    max_length: int | None = None,
) -> job.StoreExport:
    options = options or RunOptions()
    if num_proc is not None:
        options = replace(options, num_proc=num_proc)
    if wait:
        options = replace(options, wait=True)
    request = ExportRequest(
        store,
        out,
        cfg,
        Outputs(split=split, hf_dataset=hf_dataset, timestamp=use_timestamp, append=append),
        Measures(audit=audit, tokenizer=tokenizer, chat_template=chat_template, max_length=max_length),
        options,
    )
    return job.export_store(request, convert)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones included), by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class ConvertRecordingProcesses:
    """The seed's conversion, leaving a file named for the process that ran it in `folder`: a test of `--num-proc`
    asserts that other processes converted, not only that the bytes match (they would with the workers gone)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, interaction: dict):
        import os

        from personagym_hf.transform.collect import interaction_to_sample

        (self.folder / str(os.getpid())).touch()
        return interaction_to_sample(interaction)

    def processes(self) -> set[int]:
        return {int(path.name) for path in self.folder.iterdir()}
