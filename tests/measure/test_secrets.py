"""The secrets scanner (`measure/secrets.py`) on its labelled corpus, its filters one by one, and its rule table.

Every key here is made up and built from parts (`testing/secrets_corpus.py`), so the repository trips no scanner."""

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from personagym_hf.measure import secrets
from personagym_hf.measure.secrets import KINDS, RULES, digest, entropy, find_secrets, placeholder, preview
from personagym_hf.testing.secrets_corpus import CASES, _Maker, figures

DOCS = Path(__file__).parents[2] / "docs" / "security.md"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_corpus_gives_exactly_the_expected_findings(case):
    assert tuple((secret.kind, secret.text) for secret in find_secrets(case.text)) == case.expected


def test_the_corpus_figures():
    """The figures docs/security.md gives: 24 of 26 labelled secrets found, 1 finding that is no secret (a key a model
    invented in example code, indistinguishable from a real one)."""
    assert figures() == {
        "cases": 55,
        "secrets": 26,
        "true_positives": 24,
        "false_positives": 1,
        "false_negatives": 2,
        "precision": 0.96,
        "recall": 0.9231,
    }


def test_every_kind_has_a_true_secret_in_the_corpus():
    labelled = {kind for case in CASES for kind, _text in case.secrets}
    assert set(KINDS) <= labelled


def test_a_finding_is_where_its_text_is_and_the_text_around_is_not_taken():
    key = _Maker(1).google()
    text = f"key={key}; next"
    (found,) = find_secrets(text)
    assert (found.kind, found.start, found.end, text[found.start : found.end]) == ("google_api_key", 4, 43, key)


@pytest.mark.parametrize(
    "before, after, found",
    [
        ("", "", True),
        (" ", " ", True),
        ('"', '"', True),
        ("=", "&", True),
        ("\\n", "\\n", True),  # an escaped newline before (a JSON string, a log line)
        ("x", "", False),  # inside a word: `wisk-…`, `xAIza…`
        ("-", "", False),
        ("+", "", False),  # inside a base64 blob
        ("/", "", False),
        ("", "a", False),  # longer than the format's fixed length
        ("", "_", False),
    ],
    ids=["alone", "spaces", "quotes", "query", "escaped-newline", "word", "dash", "plus", "slash", "longer", "under"],
)
def test_a_key_is_found_only_at_token_boundaries(before, after, found):
    key = _Maker(2).google()
    assert bool(find_secrets(f"{before}{key}{after}")) is found


@pytest.mark.parametrize(
    "body, is_placeholder",
    [
        ("YOUR_API_KEY_HERE_0123", True),  # a stop-word in one case
        ("your-key-goes-in-here", True),
        ("Example1Example2Exampl", True),
        ("xxxxxxxxxxxxxxxxxxxxxxxxxxxx", True),  # a run of one character
        ("q8Zr00000Lm3TpWv2Kx7NaB4c", True),
        ("q8Zr0000Lm3TpWv2Kx7NaB4c", False),  # 4 of one character: chance in a random key
        ("abcdefq8ZrLm3TpWv", True),  # a run in order
        ("q8Zr123456Lm3T", True),
        ("q8ZryOuRLm3TpWv2", False),  # a stop-word in mixed case is chance, not a placeholder
        ("q8ZrLm3TpWv2Kx7N", False),
    ],
)
def test_placeholder_filters(body, is_placeholder):
    rule = next(rule for rule in RULES if rule.kind == "google_api_key")
    assert placeholder(rule, body) is is_placeholder


def test_the_entropy_floor_drops_bodies_too_regular_for_a_random_key():
    rule = next(rule for rule in RULES if rule.kind == "google_api_key")
    regular = "abab" * 8 + "abc"  # 35 characters, no run of one character, 1.2 bits a character
    assert round(entropy(regular), 2) == 1.16 and placeholder(rule, regular)
    assert entropy("") == 0.0 and entropy("ab") == 1.0


def test_a_url_password_is_a_word_its_placeholders_are_words_too():
    maker = _Maker(3)
    real = maker.password()
    assert [s.text for s in find_secrets(f"amqp://worker:{real}@mq:5672/")] == [real]
    for fake in ("password", "Passw0rd!", "admin123", "${DB_PASS}", "%(pw)s", "****", "root"):
        assert find_secrets(f"amqp://worker:{fake}@mq:5672/") == [], fake
    assert find_secrets("amqp://worker:worker@mq:5672/") == []  # the user's name as its password: a default


def test_overlapping_findings_keep_the_one_that_starts_first_then_the_longer_then_the_earlier_rule():
    token = _Maker(4).github()
    text = f"https://deploy:{token}@github.com/acme/app.git"
    assert [(s.kind, s.text) for s in find_secrets(text)] == [("github_token", token)]  # not url_password


def test_a_private_key_is_found_whole_from_begin_to_end_and_one_cut_short_to_its_last_base64():
    maker = _Maker(5)
    block = maker.pem()
    (found,) = find_secrets(f"see:\n{block}\nThen run ssh-add.")
    assert found.text == block
    cut = block.rsplit("\n", 1)[0]  # no END line: pasted in part
    (found,) = find_secrets(f"{cut}\nThen run ssh-add.")
    assert found.text == cut


def test_a_jwt_is_found_only_when_its_parts_decode():
    maker = _Maker(6)
    token = maker.jwt()
    assert [s.kind for s in find_secrets(token)] == ["jwt"]
    header, payload, signature = token.split(".")
    assert find_secrets(f"{header}.{payload[:-4]}!!!!.{signature}") == []  # a payload that is not base64 JSON
    assert find_secrets(f"eyJhbGciOi.eyJzdWIiOiJ4.{signature}") == []
    real_claims = maker.jwt({"token_use": "access", "scope": "read write", "where": "eu-west-1", "sub": "7f3c"})
    assert [s.kind for s in find_secrets(real_claims)] == ["jwt"]  # claims are words: only examples' words count


def test_digest_and_preview_never_hold_the_text():
    key = _Maker(7).google()
    assert digest(key) == digest(key) and len(digest(key)) == 64 and key not in digest(key)
    assert preview(key) == f"{key[:6]}…[39 chars]"


def test_the_published_examples_are_kept_as_digests_only():
    source = Path(secrets.__file__).read_text(encoding="utf-8")
    assert "4eC39HqLyjWD" not in source
    stripe_docs_key = "sk_test_" + "4eC39HqLyjWD" + "arjtT1zdp7dc"
    assert digest(stripe_docs_key) in secrets.PUBLISHED_EXAMPLES


@pytest.mark.parametrize("rule", RULES, ids=[f"{rule.kind}-{index}" for index, rule in enumerate(RULES)])
def test_each_rules_prefilter_matches_whatever_the_rule_matches(rule):
    """A rule's RE2 prefilter is implied by its pattern: every corpus text the rule matches (placeholders too, before
    the filters), and its JSON, match the prefilter."""
    texts = [case.text for case in CASES if rule.pattern.search(case.text)]
    texts += [orjson.dumps({"t": text}).decode() for text in texts]
    assert texts and pc.match_substring_regex(pa.array(texts), rule.prefilter).to_pylist() == [True] * len(texts)


def test_the_prefilters_pass_every_text_a_rule_matches():
    """`may_hold_secrets` (keywords, Python) and `PREFILTER` (RE2, over Arrow columns) pass every text with a finding;
    an ordinary reply passes neither."""
    texts = [case.text for case in CASES if case.expected]
    assert all(secrets.may_hold_secrets(text) for text in texts)
    assert pc.match_substring_regex(pa.array(texts), secrets.PREFILTER).to_pylist() == [True] * len(texts)
    ordinary = "An ordinary reply with code: print('hello'); see https://docs.python.org/3/ and wisk-couchbase-bucket"
    assert not secrets.may_hold_secrets("print('hello')") and not find_secrets(ordinary)
    assert pc.match_substring_regex(pa.array([ordinary]), secrets.PREFILTER).to_pylist() == [False]


@pytest.mark.parametrize("case", [case for case in CASES if case.expected], ids=lambda case: case.name)
def test_a_secret_in_any_string_of_a_record_is_seen_in_the_records_json(case):
    """What lets a redacting export skip walking a record string by string: its JSON (escaped newlines, quotes and
    tabs) holds every secret its strings hold, for both the Python check and the RE2 prefilter."""
    record = {"a": [{"b": case.text}], "c": "x" + case.text + "\t\u0001", case.text: 1}
    dump = orjson.dumps(record)
    assert secrets.json_holds_secrets(dump)
    assert pc.match_substring_regex(pa.array([dump.decode()]), secrets.PREFILTER).to_pylist() == [True]


def test_records_without_secrets_are_flagged_only_where_a_boundary_decides():
    """The JSON check skips the token boundaries (a JSON escape can stand right before a key), so the keys inside
    base64 blobs are a false alarm there: such a record is walked string by string, and nothing is found."""
    flagged = [
        case.name for case in CASES if not case.expected and secrets.json_holds_secrets(orjson.dumps({"t": case.text}))
    ]
    assert flagged == ["base64 image", "long base64url blob"]


def test_every_rule_is_in_the_docs_table_with_its_source():
    page = DOCS.read_text(encoding="utf-8")
    rows = {
        tuple(cell.strip() for cell in line.strip("|").split("|"))
        for line in page.splitlines()
        if line.startswith("| `")
    }
    for kind, title, source in secrets.rule_table():
        assert any(row[:2] == (f"`{kind}`", title) and row[-1] == source for row in rows), (kind, title)
    assert "precision **0.96**, recall **0.923**" in page
