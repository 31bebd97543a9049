"""Moved to `personagym_hf.card.sections`; this path is kept so that earlier imports keep working."""

from .card.sections import *  # noqa: F401,F403
