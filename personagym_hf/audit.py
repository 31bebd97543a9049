"""Moved to `personagym_hf.measure.leakage`; this path is kept so that earlier imports keep working."""

from .measure.leakage import *  # noqa: F401,F403
