"""The seed's training-data API (`src.training_data` upstream): a thin face over the streaming modules.

The list-returning methods are kept for compatibility and are built on the streaming ones; for big
stores use `TrainingDataExporter.export_store`, which never holds the store in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import RunOptions, parse_config
from .read.store import BadRecord, Record
from .request import ExportRequest, Layout, Measures, Outputs
from .schema import TrainingSample
from .transform.collect import checks_itself, interaction_to_sample, validate_sample
from .transform.policy import Rejections, iter_samples
from .write.exporter import Exporter, ExportResult, open_destination
from .write.manifest import collector_name

logger = logging.getLogger(__name__)


class TrainingDataCollector:
    """Collects and transforms interactions to training samples.

    Subclass it and override `interaction_to_training_sample` to customise samples; the exporter, the
    builder and the CLI (`--collector module:Class`) all convert through that method.
    """

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = config or {}
        self.settings = parse_config(self.config)

    @checks_itself
    def interaction_to_training_sample(self, interaction: dict[str, Any]) -> TrainingSample:
        """Convert single interaction to training sample (raises `InvalidInteraction` when it cannot be)."""
        return interaction_to_sample(interaction)

    def iter_samples(
        self, interactions: Iterable[dict[str, Any] | Record | BadRecord], rejections: Rejections | None = None
    ) -> Iterator[TrainingSample]:
        """Valid samples, one at a time; bad interactions follow `on_bad_records` (default: warn and skip)."""
        rejections = rejections if rejections is not None else Rejections(self.settings.on_bad_records)
        records = (
            item if isinstance(item, (Record, BadRecord)) else Record("<interactions>", f"item {index}", item)
            for index, item in enumerate(interactions)
        )
        for sample, _record in iter_samples(records, self.interaction_to_training_sample, rejections):
            yield sample

    def collect_from_interactions(self, interactions: Iterable[dict[str, Any]]) -> list[TrainingSample]:
        """Convert multiple interactions to training samples."""
        return list(self.iter_samples(interactions))


class TrainingDataExporter:
    """Exports training samples to files in `paths.training_data.output_dir`."""

    def __init__(self, config: dict[str, Any] | None = None, collector: TrainingDataCollector | None = None):
        self.config = config or {}
        self.settings = parse_config(self.config)
        self.output_dir = Path(self.settings.output_dir)
        self.collector = collector or TrainingDataCollector(self.config)

    def export_samples(
        self,
        samples: Iterable[TrainingSample],
        split: bool | None = None,
        use_timestamp: bool = True,
        append: bool = False,
    ) -> dict[str, str]:
        """Export samples to JSON files (and a JSONL beside each); returns {split name: JSON path}.

        `split` defaults to False (the seed's default). With `append=True`, samples whose sample_id an earlier
        export in the output directory already holds are skipped, the earlier rows stay in their split, and
        the export keeps its layout (split or not, its `hf_dataset/` folder): `split` None follows it, and a
        different `split` or different settings raise `AppendError`. An append writes no timestamped version
        (`use_timestamp` applies to new exports only, as the seed's default is true).
        """
        from .run.runner import InProcess
        from .transform.encode import Encoder

        request = ExportRequest(
            None,
            self.output_dir,
            self.settings,
            Outputs(
                split=split,
                hf_dataset=None if append else False,
                timestamp=use_timestamp and not append,
                append=append,
                statistics=False,
                first=Layout(split=False, hf_dataset=False),
            ),
            Measures(audit=None),
        )
        samples = list(samples)  # the seed gives a list; a mode that balances its groups counts them first
        destination = open_destination(request, collector_name(self.collector.interaction_to_training_sample))
        exporter = None
        try:
            layout = destination.layout
            assignment = None
            if layout.split:
                earlier = destination.earlier.manifest.assignment if destination.earlier is not None else None
                assignment = self._assignment(samples, earlier)
            options = request.run
            encoder = Encoder(self.settings, layout.split, layout.hf_dataset, assignment=assignment, options=options)
            with InProcess(request.run) as runner:
                exporter = Exporter(destination, request, encoder, runner)
                result = exporter.add_all(samples).finish()
            destination.folder.commit()
            for warning in result.warnings:
                logger.warning("%s", warning)
        except BaseException:
            if exporter is not None:
                exporter.abort()
            destination.folder.abort()
            raise
        return {name: str(path) for name, path in result.json_files.items()}

    def compute_statistics(self, samples: Iterable[TrainingSample]) -> dict[str, Any]:
        """Dataset statistics, with each sample counted in the split it is exported to."""
        from .config import split_names
        from .measure.stats import StatsAccumulator
        from .transform.split import split_of

        samples = list(samples)
        s = self.settings
        assignment = self._assignment(samples)
        stats = StatsAccumulator.of_splits(split_names(s.split_by))
        for sample in samples:
            data = sample.to_dict()
            if assignment is not None:
                split = assignment.split_of(data)
            else:
                split = split_of(data, s.seed, s.ratios, s.split_by)
            if split is None:
                stats.hold_out(data)
            else:
                stats.add(data, split)
        return stats.to_dict()

    def _assignment(self, samples: list[TrainingSample], earlier: dict | None = None):
        """The split of each group of `samples` (`transform.assign`), for a mode that gives splits to groups."""
        from .transform.assign import KeyCounts, resolve
        from .transform.encode import needs_assignment

        s = self.settings
        if not needs_assignment(s):
            return None
        counts = KeyCounts()
        for sample in samples:
            counts.add(sample.to_dict())
        return resolve(counts, s.split_by, s.split_assignment, s.ratios, s.seed, earlier)

    def export_statistics(self, samples: Iterable[TrainingSample], use_timestamp: bool = True) -> str:
        """Export dataset statistics; returns the file's path."""
        from .write.exporter import stamped_name, timestamp
        from .write.files import write_json_atomic

        name = stamped_name("statistics", timestamp() if use_timestamp else None)
        return str(write_json_atomic(self.output_dir / name, self.compute_statistics(samples)))

    def export_store(
        self,
        interactions: str | Path | None = None,
        *,
        outputs: Outputs | None = None,
        measures: Measures = Measures(),
        run: RunOptions = RunOptions(),
    ):
        """Everything `personagym-hf export` writes, streamed from a store (`paths.interactions.output_dir`) into
        `paths.training_data.output_dir`: `outputs` (default: split, `hf_dataset/`, appending when
        `experiment.incremental` says so), `measures` and `run` as `request.ExportRequest` takes them."""
        from .run.job import export_store

        request = ExportRequest(
            interactions or self.settings.interactions_dir,
            self.output_dir,
            self.settings,
            outputs if outputs is not None else Outputs(append=self.settings.incremental),
            measures,
            run,
        )
        return export_store(request, self.collector.interaction_to_training_sample)


__all__ = ["TrainingSample", "TrainingDataCollector", "TrainingDataExporter", "ExportResult", "validate_sample"]
