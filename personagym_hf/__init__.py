"""personagym-hf: PersonaGym interactions -> training datasets, built on `datasets` and the Hub."""

from .config import ConfigError, load_config
from .interaction_generator import InteractionStorage
from .schema import TrainingSample
from .training_data import TrainingDataCollector, TrainingDataExporter
from .transform.collect import InvalidInteraction, validate_sample
from .transform.policy import BadInputError
from .version import __version__


def __getattr__(name: str):
    # The builder imports `datasets` (slow); load it only when asked for, so the CLI starts fast.
    if name in ("PersonaGymBuilder", "PersonaGymConfig", "load_dataset"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'personagym_hf' has no attribute {name!r}")


__all__ = [
    "PersonaGymBuilder",
    "PersonaGymConfig",
    "load_dataset",
    "BadInputError",
    "ConfigError",
    "InteractionStorage",
    "InvalidInteraction",
    "TrainingDataCollector",
    "TrainingDataExporter",
    "TrainingSample",
    "load_config",
    "validate_sample",
    "__version__",
]
