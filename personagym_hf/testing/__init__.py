"""Helpers for the tests, the benchmark and the demo store's script: not part of the package's API.

This folder is left out of the wheel (`[tool.setuptools] packages` in pyproject.toml lists only the package and
its card template), so it is importable from a checkout (an editable install) and nowhere else.

- `synth.py`: small stores of a few templates (texts repeat), for conversions and the demo
- `realistic.py`: stores in the shape of a real PersonaGym store (`write_realistic_store`), for the benchmark and
  for tests whose subject depends on the texts (the leakage audit, memory, speed)
"""
