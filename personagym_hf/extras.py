"""Optional dependencies: imported when a feature needs them, with a one-line error naming the extra to install.

Nothing here is imported by `personagym-hf --help` or by an export that does not use the feature.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingExtra` saying which `pip install` brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: pip install 'personagym-hf[{extra}]'"
        ) from None
