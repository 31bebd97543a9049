"""Talking to the Hub: one line when it cannot be reached.

A push makes many requests through `huggingface_hub` (and `datasets`, when it loads the pushed data back), and
each of them can fail below HTTP: the name of the endpoint does not resolve, nothing listens on its port, the
connection is closed without an answer, or `HF_HUB_OFFLINE` forbids requests. The libraries raise those as
`httpx` transport errors, sometimes wrapped (`LocalEntryNotFoundError`, a `datasets` `ConnectionError`), with a
long traceback; `hub_session` turns them into one `HubUnreachableError` whose message says which host could not be
reached, why, and what to check.
"""

from __future__ import annotations

import logging
import socket
import ssl
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


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


def _reason(error: BaseException) -> str | None:
    """Why the Hub could not be reached, in a few words, or None if `error` is not a failure to reach it."""
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
            return "no answer in time"
        if isinstance(link, (httpx.RemoteProtocolError, ConnectionResetError)):
            return "connection closed without an answer"
    first = next(link for link in chain if isinstance(link, httpx.TransportError))
    return str(first).splitlines()[0] if str(first) else first.__class__.__name__


def unreachable(error: BaseException) -> HubUnreachableError | None:
    """The one-line error for a failure to reach the Hub, or None if `error` is something else."""
    reason = _reason(error)
    if reason is None:
        return None
    if reason == "HF_HUB_OFFLINE is set":
        return HubUnreachableError(f"cannot reach {_endpoint()} ({reason}): unset HF_HUB_OFFLINE to talk to the Hub")
    return HubUnreachableError(f"cannot reach {_origin(error)} ({reason}): check the network or HF_ENDPOINT")


def check_online() -> None:
    """Fail at once, before any work, when `HF_HUB_OFFLINE` forbids every request."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        raise HubUnreachableError(
            f"cannot reach {_endpoint()} (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to talk to the Hub"
        )


@contextmanager
def hub_session() -> Iterator[None]:
    """Run a push (or an upload) so that a failure to reach the Hub is one `HubUnreachableError`."""
    check_online()
    try:
        yield
    except HubUnreachableError:
        raise
    except Exception as error:  # noqa: BLE001 — only failures to reach the Hub are replaced; the rest re-raised
        replaced = unreachable(error)
        if replaced is None:
            raise
        logger.debug("the Hub could not be reached", exc_info=error)
        raise replaced from error
