"""Who a push runs as: the token `huggingface_hub` would send, and what the Hub says of it.

Checked before planning, so that a dry run can say that the push would be refused, and a push stops before it
uploads anything. The token itself is only ever handed to `HfApi`: it is never printed, logged or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import connection


@dataclass(frozen=True)
class Auth:
    summary: str  # for the plan: "test-user (write)", "none found", ...
    problem: str | None = None  # why a push would be refused, with the fix
    anonymous: bool = False  # reads go without a token, so private repos look missing

    @property
    def ok(self) -> bool:
        return self.problem is None


NO_TOKEN = Auth("none found", "no Hub token found; pass --token, set HF_TOKEN or run `hf auth login`", anonymous=True)
REFUSED = Auth(  # a dry run then reads without it: the Hub refuses every request that carries it
    "refused by the Hub (401)",
    "the Hub refused the token (401: invalid or expired); pass another --token or run `hf auth login`",
    anonymous=True,
)


def check_auth(api, token: str | None) -> Auth:
    """What the Hub says of the token `api` sends (`token`, else HF_TOKEN, else the stored login)."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError

    if not (token or get_token()):
        return NO_TOKEN
    try:
        info = connection.retrying(api.whoami, "checking the Hub token")
    except HfHubHTTPError as error:
        if getattr(error.response, "status_code", None) == 401:
            return REFUSED
        raise
    user = info.get("name") or "?"
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        return Auth(
            f"{user} (read only)",
            f"the token of {user} can only read; pass a token with write access (--token or `hf auth login`)",
        )
    return Auth(f"{user} ({role})" if role else user)
