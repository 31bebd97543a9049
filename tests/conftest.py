"""Test-session setup.

`hub_fixtures` must be imported first: it points HF_ENDPOINT, HF_HOME and friends at a local
Hub-compatible server and temp caches, and `huggingface_hub`/`datasets` read those at import time.
"""

from hub_fixtures import *  # noqa: F401,F403  (env setup + hub fixtures; must come before HF imports)
