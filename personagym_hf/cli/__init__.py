"""`personagym-hf`: the command line; `main` is the entry point.

- `main.py`: the parser, the commands and their one-line errors
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
