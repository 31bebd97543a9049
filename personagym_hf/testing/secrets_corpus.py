"""A labelled corpus for the secrets scanner (`measure/secrets.py`), and a store of dialogues that carry secrets.

Every secret here is made up: built at import from a seeded random generator and the provider's documented shape
(prefix, alphabet, length), never a real key, and never written out whole in this file, so that the repository
itself does not trip other scanners. Each case is a text as a chat has it (a log line, a config snippet, code), the
secrets a person would call real in it (`secrets`, the label) and what the scanner finds in it (`found`, exact):
the two differ on purpose where the scanner is known to be wrong (a format it does not cover, a model-invented
key that looks real), and `figures()` gives precision and recall of the findings against the labels.

`write_store` writes a store of chat-like dialogues (code blocks, configuration, console logs) in which models wrote
placeholders and users pasted a few real-format keys: the shape of the issue that asked for this scanner.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    secrets: tuple[tuple[str, str], ...] = ()  # the label: (kind, text) of each real secret in `text`
    found: tuple[tuple[str, str], ...] | None = None  # what the scanner finds, when it differs from the label

    @property
    def expected(self) -> tuple[tuple[str, str], ...]:
        return self.secrets if self.found is None else self.found


class _Maker:
    """Made-up secrets in each documented shape, from one seeded generator (the same corpus on every run)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def chars(self, alphabet: str, count: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(count))

    def google(self) -> str:
        return "AI" + "za" + "Sy" + self.chars(URLSAFE, 33)

    def openai_project(self) -> str:
        return "sk-" + "proj-" + self.chars(URLSAFE, 74) + "T3Blbk" + "FJ" + self.chars(URLSAFE, 74)

    def openai_legacy(self) -> str:
        return "sk-" + self.chars(ALNUM, 20) + "T3Blbk" + "FJ" + self.chars(ALNUM, 20)

    def anthropic(self) -> str:
        return "sk-" + "ant-" + "api03-" + self.chars(URLSAFE, 93) + "AA"

    def anthropic_oauth(self) -> str:
        return "sk-" + "ant-" + "oat01-" + self.chars(URLSAFE, 80)

    def sk_other(self) -> str:
        return "sk-" + self.chars(HEX, 32)

    def github(self, prefix: str = "ghp") -> str:
        return prefix + "_" + self.chars(ALNUM, 36)

    def github_fine_grained(self) -> str:
        return "github" + "_pat_" + self.chars(ALNUM, 22) + "_" + self.chars(ALNUM, 59)

    def gitlab(self) -> str:
        return "gl" + "pat-" + self.chars(URLSAFE, 20)

    def huggingface(self) -> str:
        return "h" + "f_" + self.chars(string.ascii_letters, 34)

    def aws_id(self) -> str:
        return "AK" + "IA" + self.chars(string.ascii_uppercase + "234567", 16)

    def aws_secret(self) -> str:
        return self.chars(B64, 40)

    def slack_bot(self) -> str:
        return "xo" + "xb-" + self.chars(string.digits, 12) + "-" + self.chars(string.digits, 13) + "-" + self.chars(
            ALNUM, 24
        )

    def slack_webhook(self) -> str:
        return (
            "https://hooks." + "slack.com/services/T" + self.chars(string.ascii_uppercase + string.digits, 8) + "/B"
            + self.chars(string.ascii_uppercase + string.digits, 10) + "/" + self.chars(ALNUM, 24)
        )  # fmt: skip

    def stripe(self, prefix: str = "sk_live_") -> str:
        return prefix[:3] + prefix[3:] + self.chars(ALNUM, 24)

    def pem(self, label: str = "RSA PRIVATE KEY", lines: int = 6, newline: str = "\n") -> str:
        body = newline.join(self.chars(B64, 64) for _ in range(lines)) + newline + self.chars(B64, 22) + "=="
        return f"-----BEGIN {label}-----{newline}{body}{newline}-----END {label}-----"

    def jwt(self, payload: dict[str, Any] | None = None) -> str:
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")

        payload = payload or {"sub": self.chars(HEX, 24), "role": "service", "exp": 1893456000}
        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{self.chars(URLSAFE, 43)}"

    def password(self) -> str:
        return self.chars(ALNUM, 10) + "!" + self.chars(ALNUM, 5)


def build_cases(seed: int = 26) -> tuple[Case, ...]:
    m = _Maker(seed)
    cases: list[Case] = []

    def secret(name: str, kind: str, value: str, template: str) -> None:
        cases.append(Case(name, template.format(value), ((kind, value),)))

    def clean(name: str, text: str) -> None:
        cases.append(Case(name, text))

    # True secrets, one per documented shape, as a chat carries them.
    key = m.google()
    secret("google key in a console log", "google_api_key", key,
           "GET https://maps.googleapis.com/maps/api/geocode/json?address=Paris&key={} 403 (Forbidden)")  # fmt: skip
    secret("google key in JS config", "google_api_key", m.google(), 'const firebaseConfig = {{ apiKey: "{}" }};')
    secret("openai project key in .env", "openai_api_key", m.openai_project(), "OPENAI_API_KEY={}\nDEBUG=1")
    secret("openai legacy key in python", "openai_api_key", m.openai_legacy(), 'openai.api_key = "{}"')
    secret("anthropic key in curl", "anthropic_api_key", m.anthropic(), 'curl -H "x-api-key: {}" https://api')
    secret("other sk- key", "sk_api_key", m.sk_other(), "client = OpenAI(api_key='{}', base_url=BASE)")
    secret("anthropic oauth token", "anthropic_api_key", m.anthropic_oauth(), "CLAUDE_CODE_OAUTH_TOKEN={}")
    secret("github classic token", "github_token", m.github(), "export GITHUB_TOKEN={}")
    secret("github token in a clone URL", "github_token", m.github("gho"),
           "git clone https://oauth2:{}@github.com/acme/app.git")  # fmt: skip
    secret("github fine-grained token", "github_token", m.github_fine_grained(), "token: {}")
    secret("gitlab token in CI", "gitlab_token", m.gitlab(), "variables:\n  GITLAB_TOKEN: {}")
    secret("hugging face token", "huggingface_token", m.huggingface(), "huggingface-cli login --token {}")
    aws_id, aws_secret = m.aws_id(), m.aws_secret()
    cases.append(
        Case(
            "aws credentials file",
            f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n",
            (("aws_access_key_id", aws_id), ("aws_secret_access_key", aws_secret)),
        )
    )
    secret("slack bot token", "slack_token", m.slack_bot(), 'client = WebClient(token="{}")')
    secret("slack webhook", "slack_webhook_url", m.slack_webhook(), "curl -X POST -d @msg.json {}")
    secret("stripe live key", "stripe_secret_key", m.stripe(), 'const stripe = require("stripe")("{}");')
    secret("stripe restricted test key", "stripe_secret_key", m.stripe("rk_test_"), "STRIPE_KEY={}")
    secret("pem private key", "private_key", m.pem(), "here is my key, why does ssh refuse it?\n{}\nthanks")
    secret("openssh private key", "private_key", m.pem("OPENSSH PRIVATE KEY", 4), "{}")
    pem = m.pem("PRIVATE KEY", 4, "\\n")
    secret("private key in a JSON string", "private_key", pem, '{{"type": "service_account", "private_key": "{}"}}')
    secret("jwt in a log", "jwt", m.jwt(), "2026-02-06 10:31:07 INFO auth header=Bearer {} user=42")
    password = m.password()
    secret("password in a database URL", "url_password", password,
           "DATABASE_URL=postgresql://orders_app:{}@db.prod.internal:5432/orders")  # fmt: skip
    secret("password in a redis URL", "url_password", m.password(), "redis://:{}@cache:6379/0")

    # Not secrets: words that hold a prefix, placeholders, documentation's own examples, hashes, ids, images.
    clean("words containing sk-", "see wisk-couchbase-bucket-testing and risk-factors-in-patients-with-diabetes")
    clean("more words containing sk-", "task-queue-worker-deployment-configuration, desk-booking-system-for-teams")
    clean("slack placeholder", 'SLACK_TOKEN = "xoxp-your-token-here"')
    clean("slack placeholder digits", "token = xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx")
    clean("openai placeholder", 'client = OpenAI(api_key="sk-your-api-key-here")')
    clean("openai project placeholder", "OPENAI_API_KEY=sk-proj-" + "YOUR_API_KEY_HERE")
    clean("google placeholder", "apiKey: 'AIza" + "Sy" + "X" * 33 + "'")
    clean("google placeholder words", "key=AIza" + "SyYOUR_API_KEY_HERE_" + m.chars(ALNUM, 15))
    clean("github placeholder", "GITHUB_TOKEN=ghp_" + "x" * 36)
    clean("hugging face placeholder", "HF_TOKEN=hf_" + "x" * 34)
    clean("hugging face identifiers", "from huggingface_hub import hf_hub_download, hf_hub_url")
    clean("aws documentation example", "aws_access_key_id = AKIA" + "IOSFODNN7" + "EXAMPLE\naws_secret_access_key = "
          + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY")  # fmt: skip
    clean("stripe documentation example", 'Stripe.api_key = "sk_test_' + "4eC39HqLyjWD" + 'arjtT1zdp7dc"')
    clean("stripe placeholder", "STRIPE_API_KEY=sk_live_your_secret_key")
    example = {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}
    clean("jwt.io example", "Authorization: Bearer " + m.jwt(example))
    truncated = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END RSA PRIVATE KEY-----"
    clean("truncated private key", truncated)
    clean("private key placeholder", "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----")
    clean("database URL placeholder", "postgres://user:password@localhost:5432/mydb")
    clean("database URL template", "mongodb+srv://<username>:<password>@cluster0.mongodb.net/test")
    clean("database URL default", "postgresql://postgres:postgres@db:5432/app")
    clean("URL with variables", "https://${GITHUB_USER}:${GITHUB_TOKEN}@github.com/acme/app.git")
    clean("URL with a stop-word password", "mysql://root:changeme@127.0.0.1:3306/app")
    clean("URL without a password", "ssh://git@github.com:22/acme/app.git and https://user@example.com/")
    clean("sha256", "sha256:" + m.chars(HEX, 64))
    clean("git commit", "commit " + m.chars(HEX, 40) + " (HEAD -> main)")
    clean("uuid", "request_id=" + "-".join(m.chars(HEX, n) for n in (8, 4, 4, 4, 12)))
    clean("bcrypt hash", "$2b$12$" + m.chars(ALNUM + "./", 53))
    blob = m.chars(B64, 300) + "AIza" + m.chars(URLSAFE, 35) + m.chars(B64, 200) + "ghp_" + m.chars(ALNUM, 36)
    clean("base64 image", '<img src="data:image/png;base64,' + blob + m.chars(B64, 100) + '==">')
    clean("long base64url blob", "cursor=" + m.chars(URLSAFE, 80) + "sk-" + m.chars(ALNUM, 40) + m.chars(URLSAFE, 9))

    # Where the scanner is known to be wrong (counted in the figures, not hidden).
    invented = m.google()
    cases.append(
        Case("model-invented key in example code", f"map = Map(api_key='{invented}')  # use your own key",
             found=(("google_api_key", invented),))  # fmt: skip
    )
    cases.append(Case("generic password in a config", "DB_PASSWORD=" + m.password(), (("password", "(any)"),), ()))
    groq = "gs" + "k_" + m.chars(ALNUM, 52)
    cases.append(Case("a provider without a rule (Groq)", f"GROQ_API_KEY={groq}", (("groq_api_key", groq),), ()))
    return tuple(cases)


CASES = build_cases()


def figures(cases: tuple[Case, ...] = CASES) -> dict[str, Any]:
    """True and false positives and negatives of the scanner's findings against the labels, and the ratios."""
    from ..measure.secrets import find_secrets

    true_positives = false_positives = false_negatives = 0
    for case in cases:
        found = {(secret.kind, secret.text) for secret in find_secrets(case.text)}
        labels = set(case.secrets)
        true_positives += len(found & labels)
        false_positives += len(found - labels)
        false_negatives += len(labels - found)
    return {
        "cases": len(cases),
        "secrets": sum(len(case.secrets) for case in cases),
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
        "precision": round(true_positives / ((true_positives + false_positives) or 1), 4),
        "recall": round(true_positives / ((true_positives + false_negatives) or 1), 4),
    }


# Chat text as LLM dialogues carry it: code, configuration and logs, mostly with placeholders.
_SNIPPETS = (
    """```python
import os
from slack_sdk import WebClient

client = WebClient(token=os.environ.get("SLACK_TOKEN", "xoxp-your-token-here"))
client.chat_postMessage(channel="#general", text="hello")
```""",
    """```bash
export OPENAI_API_KEY="sk-your-api-key-here"
curl https://api.openai.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"
```""",
    """```yaml
database:
  url: postgres://user:password@localhost:5432/app
  pool_size: 5
cache:
  url: redis://localhost:6379/0
```""",
    "Check the bucket name: `wisk-couchbase-bucket-testing` is what the SDK expects, then rerun the job.",
    "The study lists risk-factors-in-patients-with-diabetes as its first table; see https://example.org/tables/1.",
    """```
2026-02-06T10:30:01Z INFO  worker-3 started job 7f3c9a12-4b1e-4c2a-9d3e-0a1b2c3d4e5f
2026-02-06T10:30:02Z WARN  retrying request (attempt 2/5) after 503 from https://api.internal/v2/orders
```""",
    """```js
const firebaseConfig = {
  apiKey: "YOUR_API_KEY",
  authDomain: "your-app.firebaseapp.com",
};
```""",
    "Find the commit with `git log --oneline`, then `git revert 9fceb02d0ae598e95dc970b74767f19372d61af8`.",
)


def write_store(
    folder: str | Path, count: int, personas: int, seed: int = 0, real_keys: int = 2, reply_chars: int = 300
) -> tuple[Path, list[str]]:
    """A store of `count` dialogues (`synth.write_store`'s shape) whose assistant turns end with a code block, a
    configuration snippet or a log (placeholders in them), and `real_keys` users who pasted a made-up Google API key
    with a console log. Returns the store and the keys."""
    from ..interaction_generator import InteractionStorage
    from ..write.files import write_json_atomic
    from .synth import iter_interactions

    maker = _Maker(seed + 1)
    keys = [maker.google() for _ in range(real_keys)]
    storage = InteractionStorage(folder)
    rng = random.Random(seed)
    pasted = {round(i * count / max(real_keys, 1)) for i in range(real_keys)}
    for index, interaction in enumerate(iter_interactions(count, personas, seed, reply_chars)):
        for message in interaction["messages"]:
            if message["role"] == "assistant":
                message["content"] += "\n\n" + rng.choice(_SNIPPETS)
        if index in pasted:
            key = keys[sorted(pasted).index(index)]
            interaction["messages"][-2]["content"] += (
                f"\nit still fails, console says:\nGET https://maps.googleapis.com/maps/api/js?key={key} 403"
            )
        write_json_atomic(storage.file_for(interaction["interaction_id"]), interaction)
    return storage.path, keys
