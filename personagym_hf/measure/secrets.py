"""What looks like a secret in a text: the rules (one per documented key format), the placeholder filters, digests.

LLM dialogues are full of code, configuration and logs, so most strings that look like keys in them are not keys:
placeholders a model wrote in example code (`xoxp-your-token-here`), words that happen to contain a prefix
(`risk-factors-in-…` contains `sk-`), hashes, UUIDs, base64 images. A rule here therefore matches a provider's
documented format exactly (its prefix, alphabet and, where the format fixes it, its length), at a token boundary on
both sides, and then drops what a placeholder looks like: a stop-word written in one case (`YOUR`, `here`, `Example`),
a run of one character (`xxxxx`, `00000`), a run of characters in order (`abcdef`, `123456`), too little entropy for a
random string, or a key the providers publish in their own documentation. `docs/security.md` lists every rule with
the source of its format, and the labelled corpus (`testing/secrets_corpus.py`) measures them.

Speed: a text is searched for a rule only when it holds one of the rule's keywords, and each rule has a `prefilter`,
a cheap pattern every match of it also matches; `PREFILTER` joins them, for RE2 (Arrow's matcher) over a whole column
of a Parquet file or the JSON of a batch of records at once. Only the few strings it passes are searched in Python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import orjson

# Characters that continue a token: a match with one of these right before or after it is part of a longer word
# (`wisk-…`), a base64 blob (`…+AIza…/`) or an identifier, not a key of its own.
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/")
BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
PLACEHOLDER_WORDS = (
    "your",
    "here",
    "example",
    "dummy",
    "sample",
    "placeholder",
    "redacted",
    "fake",
    "insert",
    "replace",
    "changeme",
    "secret",
    "token",
)
# Passwords in URLs are words, not random strings: these (any case) mark an example's password.
PASSWORD_WORDS = PLACEHOLDER_WORDS + ("password", "passwd", "pass", "pwd", "admin", "root", "user", "test", "demo")
# In a JWT's decoded claims (natural text: `token_use`, `where` are real claims' words, so fewer and whole words).
JWT_EXAMPLE_WORDS = ("1234567890", "John Doe", "example", "Example", "dummy", "placeholder", "changeme")
TEMPLATE_MARKS = ("${", "$(", "%(", "%s", "***", "…", "...")  # and a `$` first: `$DB_PASSWORD`
# Keys the providers publish in their own documentation (models copy them into example code), by `digest`, so that
# this file does not hold them: Stripe's example test key (docs.stripe.com/keys).
PUBLISHED_EXAMPLES = frozenset({"685953cd05268be98b195545d62323b4bd4f642955997637b5a7769352e65e82"})
DIGEST_SALT = b"personagym-hf secret digest v1\0"  # fixed, so a digest is the same on every machine
# The reviewed exceptions of an `hf_dataset/` folder (`hub/safety.py`), inside it: a dot-file, never uploaded, that
# travels with the folder and that a new export of the folder keeps.
BASELINE_FILE = ".personagym-secrets-baseline.json"


@dataclass(frozen=True)
class Rule:
    """One documented key format. `pattern` (ASCII) matches the secret; its group `body` is the random part the
    filters look at (the whole match without it), its group `secret` what is reported and redacted (the whole match
    without it). A text is searched only when it contains one of `keywords`; `prefilter` (RE2 syntax, for Arrow) is
    a cheaper pattern that every match of `pattern` also matches, to pick the few strings of a column worth a look."""

    kind: str  # the finding's type, and the placeholder's: <REDACTED:kind>
    title: str
    pattern: re.Pattern
    keywords: tuple[str, ...]
    prefilter: str
    source: str  # where the format is documented
    min_entropy: float = 0.0  # bits per character of the body, below which it is not a random string
    boundary: bool = True  # a token character right before or after the match means it is part of a longer one
    words: tuple[str, ...] = PLACEHOLDER_WORDS
    runs: bool = True  # a run of one character or of characters in order marks a placeholder
    valid: Callable[[re.Match], bool] | None = None  # a further check of the match (a JWT's parts decode)


def _rule(kind: str, title: str, pattern: str, keywords: tuple[str, ...], source: str, **options) -> Rule:
    prefilter = options.pop("prefilter", None) or "|".join(re.escape(keyword) for keyword in keywords)
    return Rule(kind, title, re.compile(pattern, re.ASCII), keywords, prefilter, source, **options)


def _jwt_valid(match: re.Match) -> bool:
    """Header and payload are base64url JSON objects, the header names an algorithm, and nothing in them is an
    example's (jwt.io's token is the subject 1234567890, John Doe)."""
    decoded = []
    for part in match.group(0).split(".")[:2]:
        try:
            value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            return False
        if not isinstance(value, dict):
            return False
        decoded.append(value)
    if "alg" not in decoded[0]:
        return False
    claims = orjson.dumps(decoded).decode()
    return not any(word in claims for word in JWT_EXAMPLE_WORDS)


def _url_valid(match: re.Match) -> bool:
    """A host follows the `@`; and `postgres:postgres@`, `root:root@` (the user's name as its password) is a default,
    not a secret."""
    host = match.string[match.end() : match.end() + 1]
    return host.isascii() and (host.isalnum() or host == "[") and match.group("user") != match.group("secret")


def _aws_valid(match: re.Match) -> bool:
    """Exactly 40 characters: no more base64 right after."""
    return match.string[match.end() : match.end() + 1] not in BASE64_CHARS


# Line breaks as a chat carries them: real ones, or escaped once or twice (a key in a JSON string, a .env line, or the
# JSON of a record that holds either), with spaces or tabs (real or escaped) around.
_SPACE = r"(?:[ \t]|\\{1,2}t)*"
_NL = rf"{_SPACE}(?:\r?\n|\\{{1,2}}r\\{{1,2}}n|\\{{1,2}}n){_SPACE}"
_PEM_LABEL = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_LINE = r"(?:[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9+/]{0,15}={1,2})"
# A private key block: its header, optional `Proc-Type:`/`DEK-Info:` lines, then lines of base64 (the first one 40
# characters or more, which placeholders like `MIIEpAIBAAKCAQEA...` are not), then its END line. One cut short (pasted
# in part) ends with its base64.
_PEM = (
    rf"-----BEGIN{_PEM_LABEL}(?:{_NL}[A-Za-z-]+: [^\r\n\\]*)*"
    rf"(?P<body>(?:{_NL})*[A-Za-z0-9+/]{{40,}}={{0,2}}(?:{_NL}{_PEM_LINE})*)"
    rf"(?:(?:{_NL})*-----END{_PEM_LABEL})?"
)
# The casings config files and SDKs use (aws_secret_access_key, AWS_SECRET_ACCESS_KEY, SecretAccessKey, ...).
_AWS_SECRET_NAMES = r"(?:aws_|AWS_|aws|AWS)?(?:secret_access_key|SECRET_ACCESS_KEY|SecretAccessKey|secretAccessKey)"
_QUOTE = r"(?:\\{0,2}[\"'])?"  # a quote, or one escaped (the same config inside a JSON string)
# What RFC 3986 allows in a URL's userinfo (unreserved, percent-encoded, sub-delims), without quotes: code quotes URLs.
_USERINFO = r"[A-Za-z0-9._~%!$&()*+,;=-]"

RULES: tuple[Rule, ...] = (
    # The most specific formats first: where two rules match the same text, the earlier one names it.
    _rule(
        "anthropic_api_key",
        "Anthropic API key",
        r"sk-ant-(?:api|admin)\d\d-(?P<body>[A-Za-z0-9_-]{93}AA)",
        ("sk-ant-",),
        "Anthropic API docs (x-api-key); gitleaks rule anthropic-api-key",
        min_entropy=3.5,
    ),
    _rule(
        "anthropic_api_key",
        "Anthropic OAuth token",
        r"sk-ant-o[ar]t\d\d-(?P<body>[A-Za-z0-9_-]{40,200})",
        ("sk-ant-",),
        "gitleaks rules anthropic-oauth-token, anthropic-oauth-refresh-token",
        min_entropy=3.5,
    ),
    _rule(
        "openai_api_key",
        "OpenAI project, service-account or admin key",
        r"sk-(?:proj|svcacct|admin)-"
        r"(?P<body>(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58}))",
        ("T3BlbkFJ",),  # base64 of "OpenAI", in the middle of every OpenAI key
        "OpenAI API reference (Authentication); gitleaks rule openai-api-key",
        min_entropy=3.5,
    ),
    _rule(
        "openai_api_key",
        "OpenAI user key (legacy)",
        r"sk-(?P<body>[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
        ("T3BlbkFJ",),
        "OpenAI API reference (Authentication); gitleaks rule openai-api-key",
        min_entropy=3.5,
    ),
    _rule(
        "sk_api_key",
        "Other sk- API key (OpenAI-compatible providers)",
        r"sk-(?P<body>[A-Za-z0-9]{32,64})",
        ("sk-",),
        "DeepSeek and other OpenAI-compatible APIs (Bearer sk- and 32 or more characters; no fixed length documented)",
        min_entropy=3.0,
        valid=lambda match: not match.group("body").isalpha() and not match.group("body").isdigit(),
        prefilter=r"sk-[A-Za-z0-9]{20}",
    ),
    _rule(
        "google_api_key",
        "Google API key",
        r"AIza(?P<body>[A-Za-z0-9_-]{35})",
        ("AIza",),
        "Google Cloud docs, API keys (AIza + 35 characters, 39 in all); gitleaks rule gcp-api-key",
        min_entropy=3.5,
        prefilter=r"AIza[A-Za-z0-9_-]{8}",
    ),
    _rule(
        "github_token",
        "GitHub token (personal, OAuth, app, refresh)",
        r"gh[pousr]_(?P<body>[A-Za-z0-9]{36})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        "GitHub docs, About authentication to GitHub (GitHub's token formats); gitleaks rules github-*",
        min_entropy=3.5,
        prefilter=r"gh[pousr]_[A-Za-z0-9]{8}",
    ),
    _rule(
        "github_token",
        "GitHub fine-grained personal access token",
        r"github_pat_(?P<body>[A-Za-z0-9]{22}_[A-Za-z0-9]{59})",
        ("github_pat_",),
        "GitHub docs, About authentication to GitHub; gitleaks rule github-fine-grained-pat",
        min_entropy=3.5,
    ),
    _rule(
        "gitlab_token",
        "GitLab personal access token",
        r"glpat-(?P<body>[A-Za-z0-9_-]{20}|[A-Za-z0-9_-]{27,300}\.[0-9a-z]{9})",
        ("glpat-",),
        "GitLab docs, Token prefixes; gitleaks rules gitlab-pat, gitlab-pat-routable",
        min_entropy=3.0,
    ),
    _rule(
        "huggingface_token",
        "Hugging Face access token",
        r"hf_(?P<body>[A-Za-z]{34})",
        ("hf_",),
        "Hugging Face docs, User access tokens; gitleaks rule huggingface-access-token",
        min_entropy=3.5,
        prefilter=r"hf_[A-Za-z]{8}",
    ),
    _rule(
        "aws_access_key_id",
        "AWS access key ID",
        r"(?:AKIA|ASIA|ABIA|ACCA)(?P<body>[A-Z2-7]{16})",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        "AWS IAM docs, Unique identifiers (prefixes AKIA, ASIA, ...); gitleaks rule aws-access-token",
        min_entropy=2.5,  # 16 characters of 32: a random one is below 2.5 bits once in 50,000
        prefilter=r"A(?:KIA|SIA|BIA|CCA)[A-Z2-7]{8}",
    ),
    _rule(
        "aws_secret_access_key",
        "AWS secret access key (after its name)",
        rf"{_AWS_SECRET_NAMES}{_QUOTE}(?:\s|\\{{1,2}}[nrt]){{0,3}}[:=](?:\s|\\{{1,2}}[nrt]){{0,3}}{_QUOTE}"
        r"(?P<secret>(?P<body>[A-Za-z0-9/+]{40}))",
        ("ecret_access_key", "ECRET_ACCESS_KEY", "ecretAccessKey"),
        "AWS IAM docs, Managing access keys (40 characters); gitleaks rule aws-secret",
        min_entropy=4.0,
        boundary=False,
        valid=_aws_valid,
    ),
    _rule(
        "slack_token",
        "Slack token (bot, user, app, legacy)",
        r"xox[abeoprs]-(?:[0-9]{8,14}-){1,3}(?P<body>[A-Za-z0-9]{18,64})",
        ("xox",),
        "Slack API docs, Token types; gitleaks rules slack-*-token",
        min_entropy=3.0,
        prefilter=r"xox[abeoprs]-[0-9]",
    ),
    _rule(
        "slack_webhook_url",
        "Slack incoming webhook URL",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<body>[A-Za-z0-9+/_-]{43,56})",
        ("hooks.slack.com/",),
        "Slack API docs, Sending messages using incoming webhooks; gitleaks rule slack-webhook-url",
        min_entropy=3.5,
    ),
    _rule(
        "stripe_secret_key",
        "Stripe secret or restricted key",
        r"[rs]k_(?:live|test)_(?P<body>[A-Za-z0-9]{24,128})",
        ("k_live_", "k_test_"),
        "Stripe docs, API keys (sk_/rk_, live/test); Stripe's note to GitLab on key lengths (up to 128)",
        min_entropy=3.5,
        prefilter=r"k_(?:live|test)_",
    ),
    _rule(
        "private_key",
        "Private key block (PEM, OpenSSH)",
        _PEM,
        ("PRIVATE KEY",),
        "RFC 7468 (PEM textual encoding); OpenSSH PROTOCOL.key; gitleaks rule private-key",
        min_entropy=4.0,
        boundary=False,
        runs=False,  # DER and OpenSSH encode lengths as runs of A (`AAAAB3Nza…`)
    ),
    _rule(
        "jwt",
        "JSON Web Token",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.(?P<body>[A-Za-z0-9_-]{16,})",
        ("eyJ",),
        "RFC 7519 (header.payload.signature, base64url JSON); detect-secrets JwtTokenDetector",
        min_entropy=3.0,
        valid=_jwt_valid,
        prefilter=r"eyJ[A-Za-z0-9_-]{8,}\.eyJ",
    ),
    _rule(
        "url_password",
        "Password in a URL",
        rf"://(?P<user>{_USERINFO}{{0,64}}):(?P<secret>(?P<body>{_USERINFO}{{1,128}}))@",
        ("://",),
        "RFC 3986 section 3.2.1 (userinfo); detect-secrets BasicAuthDetector",
        boundary=False,
        words=PASSWORD_WORDS,
        valid=_url_valid,
        prefilter=rf"://{_USERINFO}*:{_USERINFO}*@",
    ),
)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(rule.kind for rule in RULES))
KEYWORDS: tuple[str, ...] = tuple(dict.fromkeys(keyword for rule in RULES for keyword in rule.keywords))
KEYWORD_BYTES: tuple[bytes, ...] = tuple(keyword.encode() for keyword in KEYWORDS)
_KEYWORD_BYTES = tuple(frozenset(keyword.encode() for keyword in rule.keywords) for rule in RULES)
# Every rule's prefilter as one pattern, for RE2 over whole columns (`hub/safety.py`) or batches of records
# (`transform/redact.py`): a string it does not match holds no secret.
PREFILTER = "|".join(f"(?:{rule.prefilter})" for rule in RULES)
URL_RULE = next(index for index, rule in enumerate(RULES) if rule.kind == "url_password")
TOKEN_PREFILTER = "|".join(f"(?:{rule.prefilter})" for index, rule in enumerate(RULES) if index != URL_RULE)


@dataclass(frozen=True)
class Secret:
    """A secret found in a text: its kind and where it is (`text[start:end]`)."""

    kind: str
    start: int
    end: int
    text: str


def entropy(text: str) -> float:
    """Shannon entropy of `text` in bits per character."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(count / total * math.log2(count / total) for count in Counter(text).values())


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    """A stop-word written in one case (`your`, `YOUR`, `Your`): placeholders are written so, while a random key holds
    one only by chance, and then mostly in mixed case."""
    return any(word in text or word.upper() in text or word.capitalize() in text for word in words)


def _runs(text: str) -> bool:
    """A run of 5 or more of one character (`xxxxx`, `00000`) or of 6 or more in order (`abcdef`, `123456`)."""
    same = order = 1
    for previous, current in zip(text, text[1:]):
        same = same + 1 if current == previous else 1
        order = order + 1 if ord(current) == ord(previous) + 1 else 1
        if same >= 5 or order >= 6:
            return True
    return False


_BREAKS = re.compile(r"\\+[nrt]|\s")


def placeholder(rule: Rule, body: str) -> bool:
    """Whether `body` (a match's random part) is what an example or a template writes rather than a key."""
    if rule.kind == "private_key":  # its lines, however broken (real or escaped newlines): the same base64
        body = _BREAKS.sub("", body)
    if rule.kind == "url_password":  # a password is a word: any case of a stop-word, or a template's mark
        lowered = body.lower()
        if any(word in lowered for word in rule.words) or any(mark in body for mark in TEMPLATE_MARKS):
            return True
        if body.startswith("$"):
            return True
    if _has_word(body, rule.words) or (rule.runs and _runs(body)):
        return True
    return entropy(body) < rule.min_entropy


def digest(secret: str) -> str:
    """The sha256 of a secret's text with a fixed salt: what a baseline and a listing show instead of the text."""
    return hashlib.sha256(DIGEST_SALT + secret.encode("utf-8")).hexdigest()


def preview(secret: str) -> str:
    """A secret as a listing shows it: its first characters (mostly the documented prefix) and its length."""
    return f"{secret[:6]}…[{len(secret)} chars]"


def _token_boundary(text: str, start: int, end: int) -> bool:
    if end < len(text) and text[end] in TOKEN_CHARS:
        return False
    if start == 0 or text[start - 1] not in TOKEN_CHARS:
        return True
    # An escaped newline or tab right before (a JSON or a log line with `\n` in it) is a boundary too.
    return start >= 2 and text[start - 2] == "\\" and text[start - 1] in "nrt"


def _candidates(text: str, rules: Iterable[tuple[int, Rule]], boundary: bool) -> Iterator[tuple[int, int, int, Rule]]:
    for index, rule in rules:
        for match in rule.pattern.finditer(text):
            start, end = match.span("secret") if "secret" in rule.pattern.groupindex else match.span()
            if boundary and rule.boundary and not _token_boundary(text, start, end):
                continue
            if placeholder(rule, match.group("body")):
                continue
            if rule.valid is not None and not rule.valid(match):
                continue
            if digest(text[start:end]) in PUBLISHED_EXAMPLES:
                continue
            yield start, end, index, rule


def _rules_in(text: str, rules: Iterable[int] | None = None) -> list[tuple[int, Rule]]:
    """The rules (with their order) one of whose keywords `text` holds; `rules` (indexes in `RULES`): of these only."""
    if rules is not None:
        return [(index, RULES[index]) for index in rules if any(k in text for k in RULES[index].keywords)]
    return [(index, rule) for index, rule in enumerate(RULES) if any(keyword in text for keyword in rule.keywords)]


def find_secrets(text: str, rules: Iterable[int] | None = None) -> list[Secret]:
    """Every secret in `text`, in order, none overlapping: where two overlap, the one that starts first is kept (the
    longer one if they start together, then the earlier rule). `rules`: only these may match (`split_prefilter`)."""
    found: list[Secret] = []
    candidates = _candidates(text, _rules_in(text, rules), boundary=True)
    for start, end, _index, rule in sorted(candidates, key=lambda c: (c[0], -(c[1] - c[0]), c[2])):
        if found and start < found[-1].end:
            continue
        found.append(Secret(rule.kind, start, end, text[start:end]))
    return found


def may_hold_secrets(text: str) -> bool:
    """Whether `text` holds a keyword of any rule (False: `find_secrets` finds nothing in it, for sure)."""
    return any(keyword in text for keyword in KEYWORDS)


def json_holds_secrets(dump: bytes, rules: Iterable[int] | None = None) -> bool:
    """Whether the JSON of a record (`orjson.dumps`) may hold a secret in one of its strings: False means none does,
    for sure, so the record need not be walked string by string. Every rule also matches a secret escaped in JSON
    (`\\n` for a newline, `\\"` for a quote), and the token boundaries are not required here, so a secret of a string
    is always found in the record's JSON (with, rarely, a false alarm that spans two strings)."""
    indexes = range(len(RULES)) if rules is None else rules
    present = {keyword for index in indexes for keyword in _KEYWORD_BYTES[index] if keyword in dump}  # bytes: faster
    if not present:
        return False
    found = [(index, RULES[index]) for index in indexes if present.intersection(_KEYWORD_BYTES[index])]
    return next(_candidates(dump.decode("utf-8"), found, boundary=False), None) is not None


def split_prefilter(strings: Any, flagged: Any) -> list[list[int] | None]:
    """For the strings of an Arrow array that `PREFILTER` flagged (a boolean mask), the rules worth trying on each:
    [the URL rule] for those only a URL with a password flagged (in code dialogues mostly `user:password@localhost`,
    the commonest false alarm by far), None (every rule) for the rest. One more RE2 pass, over the flagged ones."""
    import pyarrow.compute as pc

    subset = pc.filter(strings, flagged)
    tokens = pc.match_substring_regex(subset, TOKEN_PREFILTER).to_pylist()
    return [None if token else [URL_RULE] for token in tokens]


def rule_table() -> list[tuple[str, str, str]]:
    """(kind, title, source) of every rule, in order: the table in `docs/security.md` (checked by a test)."""
    return [(rule.kind, rule.title, rule.source) for rule in RULES]
