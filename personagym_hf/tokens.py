"""Moved to `personagym_hf.measure.tokens`; this path is kept so that earlier imports keep working."""

from .measure.tokens import *  # noqa: F401,F403
