"""Point the Hugging Face clients at a local Hub-compatible server, then provide its fixtures.

Imported first by ``conftest.py``. ``huggingface_hub`` and ``datasets`` read their configuration
from the environment at import time, so this module sets it *before* anything imports them (and
must not import them at module level itself). See ``shared/HUB_API.md``.

Fixtures:
    ``hub_server``  session-scoped running ``HubServer`` (at ``HF_ENDPOINT``).
    ``hub``         function-scoped: the same server, ``reset()`` (and HfFileSystem caches cleared) before each test.
    ``hf_client_config`` (autouse) keeps ``datasets``/``huggingface_hub`` on loopback once imported
                    and silences the LFS-PUT DeprecationWarning (also under ``-W error``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator

import pytest
from hub_server import HubServer  # stdlib only: safe to import before the environment is set

__all__ = ["HUB_PORT", "HUB_TOKEN", "hub_server", "hub", "hf_client_config"]

HUB_TOKEN = "hf_test_fake_token"


# Bound now (free port, no race) so HF_ENDPOINT is known before any client import; served once
# the `hub_server` fixture starts it.
_SERVER = HubServer(port=0)
HUB_PORT = _SERVER.port
_HF_HOME = tempfile.mkdtemp(prefix="hf_home_")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)

os.environ.update(
    HF_ENDPOINT=_SERVER.url,
    HF_TOKEN=HUB_TOKEN,
    HF_HOME=_HF_HOME,
    HF_DATASETS_CACHE=os.path.join(_HF_HOME, "datasets"),
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_UPDATE_DOWNLOAD_COUNTS="0",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    HF_DATASETS_DISABLE_PROGRESS_BARS="1",
)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_DATASETS_OFFLINE", None)

# The LFS PUT passes a file object as `data=`; httpx2 warns "Use 'content=<...>' to upload raw bytes".
_LFS_PUT_WARNING = r"Use 'content=<\.\.\.>' to upload raw bytes"
warnings.filterwarnings("ignore", message=_LFS_PUT_WARNING, category=DeprecationWarning)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    _SERVER.start()
    yield _SERVER
    _SERVER.stop()


@pytest.fixture
def hub(hub_server: HubServer) -> Iterator[HubServer]:
    """The session server, emptied; cached HfFileSystem instances (and their listings) are dropped."""
    from huggingface_hub import HfFileSystem

    hub_server.reset()
    HfFileSystem.clear_instance_cache()
    yield hub_server


@pytest.fixture(autouse=True)
def hf_client_config() -> None:
    """Settings that the environment alone does not cover once the libraries are imported.

    The warning filter is set here, inside pytest's per-test ``catch_warnings``, so that it also
    wins over ``-W error`` given on the command line.
    """
    import datasets.config
    import huggingface_hub.constants

    datasets.config.USE_PARQUET_EXPORT = False
    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    warnings.filterwarnings("ignore", message=_LFS_PUT_WARNING, category=DeprecationWarning)
