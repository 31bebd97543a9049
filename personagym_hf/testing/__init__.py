"""Helpers for the tests, the benchmark and the demo store's script: not part of the package's API.

This folder is left out of the wheel (`[tool.setuptools] packages` in pyproject.toml lists only the package and
its card template), so it is importable from a checkout (an editable install) and nowhere else.
"""
