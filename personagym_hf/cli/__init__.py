"""`personagym-hf`: the command line, one module per command group; `main` is the entry point.

- `main.py`: the parser, the entry point, errors as one line
- `common.py`: what the commands share: settings, the store, the conversion, argument types
- `export.py`: `export`, and its summary
- `inspect.py`: `validate`, `stats`, `audit`, `tokens`
- `publish.py`: `push`, `card`, `secrets`
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
