"""personagym-hf: PersonaGym interactions -> training datasets, built on `datasets` and the Hub."""

from .collect import InvalidInteraction, validate_sample
from .config import ConfigError, load_config
from .interaction_generator import InteractionStorage
from .samples import BadInputError
from .schema import TrainingSample
from .training_data import TrainingDataCollector, TrainingDataExporter

__version__ = "0.1.0"

__all__ = [
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
