"""Talking to the Hub: a timeout on every request, bounded retries of reads, one line when it cannot be reached.

- **Timeouts.** `huggingface_hub` 2.x sends its requests through one shared `httpx` client that its
  `default_client_factory` builds with `timeout=None`, so a Hub that accepts a connection and never answers
  blocks a push for ever. `hub_session` installs, through the library's own `set_client_factory`, the library's
  client with a timeout (every call that passes none gets it: commits, preupload, LFS batch and PUT, repo
  creation, settings, refs), sets `constants.HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT` (read at call time by
  `hf_hub_download` and `HfFileSystem`, through which `datasets` loads the pushed data back), and `timeout()` gives
  it to calls whose own default is `timeout=None`, which means no timeout (`repo_info`). Both are put back when the
  session ends.
- **Retries.** `huggingface_hub` retries its uploads itself (`http_backoff`) but not `repo_info`; `retrying` runs
  our reads with the session's bounded attempts and backoff. A connection refused or a name that does not
  resolve is not retried: nothing was sent, and the answer will not change in seconds.
- **One line.** The libraries raise a failure to reach the Hub as an `httpx` transport error, sometimes wrapped
  (`LocalEntryNotFoundError`, a `datasets` `ConnectionError`), with a long traceback; `hub_session` turns it into
  one `HubUnreachableError` saying which host could not be reached, why, and what to check.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0  # seconds without an answer before a request is given up (and retried)
DEFAULT_ATTEMPTS = 5
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}  # what huggingface_hub's own http_backoff retries


@dataclass(frozen=True)
class Session:
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    backoff: float = 1.0  # seconds before the first retry, doubled for each next one

    def delay(self, attempt: int) -> float:
        return self.backoff * 2 ** (attempt - 1)


_SESSION: ContextVar[Session] = ContextVar("personagym_hub_session", default=Session())


class HubUnreachableError(RuntimeError):
    """The Hub (or the storage it redirected to) could not be reached; the message says why and what to check."""


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _origin(error: BaseException) -> str:
    """scheme://host[:port] of the request that failed, else of the endpoint."""
    for link in _chain(error):
        try:
            url = str(link.request.url)  # httpx errors carry their request; the property raises when unset
        except (AttributeError, RuntimeError):
            continue
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    return _endpoint()


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and its causes, outermost first (each error once)."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _reason(error: BaseException, timeout: float) -> str | None:
    """Why the Hub could not be reached, in a few words, or None if `error` is not a failure to reach it."""
    import socket
    import ssl

    import httpx2 as httpx
    from huggingface_hub.errors import OfflineModeIsEnabled

    chain = list(_chain(error))
    if any(isinstance(link, OfflineModeIsEnabled) for link in chain):
        return "HF_HUB_OFFLINE is set"
    if not any(isinstance(link, httpx.TransportError) for link in chain):
        return None
    for link in chain:  # the innermost cause that names the reason decides
        if isinstance(link, socket.gaierror):
            return "name not resolved"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, ssl.SSLError):
            return f"TLS error: {link.reason or link}"
        if isinstance(link, httpx.TimeoutException):
            return f"no answer within {timeout:g} s"
        if isinstance(link, (httpx.RemoteProtocolError, ConnectionResetError)):
            return "connection closed without an answer"
    first = next(link for link in chain if isinstance(link, httpx.TransportError))
    return str(first).splitlines()[0] if str(first) else first.__class__.__name__


def unreachable(error: BaseException) -> HubUnreachableError | None:
    """The one-line error for a failure to reach the Hub, or None if `error` is something else."""
    reason = _reason(error, timeout())
    if reason is None:
        return None
    if reason == "HF_HUB_OFFLINE is set":
        return HubUnreachableError(f"cannot reach {_endpoint()} ({reason}): unset HF_HUB_OFFLINE to talk to the Hub")
    if reason.startswith("no answer"):
        return HubUnreachableError(
            f"cannot reach {_origin(error)} ({reason}): try again later, or pass a longer --timeout"
        )
    return HubUnreachableError(f"cannot reach {_origin(error)} ({reason}): check the network or HF_ENDPOINT")


def timeout() -> float:
    """The current session's request timeout, for calls whose own default is no timeout."""
    return _SESSION.get().timeout


def transient(error: BaseException) -> bool:
    """A failure that may pass: no answer in time, a connection lost mid-request, or a retryable status."""
    import httpx2 as httpx
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        return response is not None and response.status_code in RETRY_STATUSES
    return isinstance(error, httpx.TransportError) and not isinstance(error, httpx.ConnectError)


def retrying(call: Callable[[], T], what: str) -> T:
    """`call()`, retried on transient failures with the session's attempts and backoff."""
    session = _SESSION.get()
    for attempt in range(1, session.attempts + 1):
        try:
            return call()
        except Exception as error:  # noqa: BLE001 — only transient failures are retried; the rest re-raised
            if not transient(error) or attempt == session.attempts:
                raise
            logger.warning("%s failed (%s); retrying (%d of %d)", what, error.__class__.__name__, attempt + 1,
                           session.attempts)  # fmt: skip
            time.sleep(session.delay(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def check_online() -> None:
    """Fail at once, before any work, when `HF_HUB_OFFLINE` forbids every request."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        raise HubUnreachableError(
            f"cannot reach {_endpoint()} (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to talk to the Hub"
        )


@contextmanager
def _client_timeout(seconds: float) -> Iterator[None]:
    import httpx2 as httpx
    from huggingface_hub import constants, set_client_factory
    from huggingface_hub.utils import _http

    # The library offers a setter but no getter: the factory in place (the default, or a user's, e.g. for a
    # proxy) is read from its module so that our client is that one with a timeout, and put back afterwards.
    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

    def factory():
        client = previous()
        client.timeout = httpx.Timeout(seconds)
        return client

    saved = constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT
    set_client_factory(factory)
    constants.HF_HUB_ETAG_TIMEOUT = constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds
    try:
        yield
    finally:
        set_client_factory(previous)
        constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT = saved


@contextmanager
def hub_session(
    timeout: float = DEFAULT_TIMEOUT, attempts: int = DEFAULT_ATTEMPTS, backoff: float = 1.0
) -> Iterator[Session]:
    """Run a push (or an upload) with a timeout on every request and bounded retries of reads; a failure to
    reach the Hub comes out as one `HubUnreachableError`."""
    if not timeout > 0 or attempts < 1:
        raise ValueError(f"expected a timeout > 0 and at least 1 attempt, got timeout={timeout!r}, {attempts=}")
    check_online()
    session = Session(float(timeout), attempts, backoff)
    token = _SESSION.set(session)
    try:
        with _client_timeout(session.timeout):
            yield session
    except HubUnreachableError:
        raise
    except Exception as error:  # noqa: BLE001 — only failures to reach the Hub are replaced; the rest re-raised
        replaced = unreachable(error)
        if replaced is None:
            raise
        logger.debug("the Hub could not be reached", exc_info=error)
        raise replaced from error
    finally:
        _SESSION.reset(token)
