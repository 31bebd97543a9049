import pickle
import random
import sys

import numpy as np
import pytest
import rensa
from conftest import LEAKY, leaky_interaction

from personagym_hf.config import DEFAULT_RATIOS, SPLIT_NAMES
from personagym_hf.extras import MissingExtra
from personagym_hf.measure import leakage as audit_module
from personagym_hf.measure.leakage import (
    LeakageAudit,
    leaks,
    normalise,
    report_lines,
    shingles,
    summary_line,
    texts_of,
)
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.split import split_of


def jaccard(a: str, b: str) -> float:
    first, second = set(shingles(normalise(a))), set(shingles(normalise(b)))
    return len(first & second) / len(first | second)


def leaky_samples(keys=tuple(LEAKY)) -> list[tuple[dict, str]]:
    samples = [interaction_to_sample(leaky_interaction(key)).to_dict() for key in keys]
    return [(sample, split_of(sample, 42, DEFAULT_RATIOS)) for sample in samples]


def conversation(key: str) -> str:
    return "\n".join(LEAKY[key][2])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Plan a three-day trip to Kyoto!!", "plan a three day trip to kyoto"),
        ("  Hey,\tcan u\n help?? ", "hey can u help"),
        ("snake_case", "snake case"),
        ("Ｃａｆé — MERCI!", "café merci"),  # NFKC folds the full-width letters; the dash is punctuation
        ("日本語でもお願いします。", "日本語でもお願いします"),
        ("?!...", ""),
    ],
    ids=["ascii", "whitespace", "underscore", "nfkc_casefold", "cjk", "only_punctuation"],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_shingles_are_character_3_grams_or_the_whole_short_text():
    assert shingles("plan a") == ["pla", "lan", "an ", "n a"]
    assert shingles("ok") == ["ok"]


# The texts of one batch: common ASCII; accents, CJK and an emoji (four UTF-8 bytes) in and next to common
# characters; ASCII that `normalise` can leave but is not common (a control character, DEL); texts shorter than a
# 3-gram first, in the middle and last (a window must not cross into the next text, nor wrap around).
TOKEN_TEXTS = ["a", "abcd", "café au lait", "日本", "日本語で", "xy😀z", "hi\nbye", "\x01ab\x7f", "ok", "z", "plan a"]


def rensa_hashes(texts: list[str]) -> list[list[int]]:
    """rensa's own hashes of the audit's shingles, as Python strings."""
    return rensa.RMinHash.hash_token_sets([shingles(text) for text in texts])


def test_token_hashes_are_rensas_hashes_of_the_shingles():
    hashes, offsets = audit_module.token_hashes(TOKEN_TEXTS)
    assert offsets.tolist() == [0, 1, 3, 13, 14, 16, 18, 22, 24, 25, 26, 30]
    expected = rensa_hashes(TOKEN_TEXTS)
    assert [len(tokens) for tokens in expected] == np.diff(offsets).tolist()
    assert hashes.dtype == np.uint64 and hashes.tolist() == [h for tokens in expected for h in tokens]
    for text in TOKEN_TEXTS:  # alone, and (remembered by now) again
        single, single_offsets = audit_module.token_hashes([text])
        assert single.tolist() == rensa_hashes([text])[0] and single_offsets.tolist() == [0, len(shingles(text))]


def test_token_hashes_when_the_remembered_grams_are_emptied(monkeypatch):
    grams = audit_module._GramHashes()
    monkeypatch.setattr(audit_module, "_GRAMS", grams)
    monkeypatch.setattr(audit_module._GramHashes, "OTHER_GRAMS", 3)
    hashes, _ = audit_module.token_hashes(["日本語で", "café"])
    assert hashes.tolist() == [h for tokens in rensa_hashes(["日本語で", "café"]) for h in tokens]
    assert sorted(grams.other.values()) == sorted(rensa.RMinHash.hash_token_sets([["日本語", "本語で", "afé"]])[0])
    assert grams.table[grams.table != 0].tolist() == rensa_hashes(["caf"])[0]  # the one common gram
    again, _ = audit_module.token_hashes(["語で", "é日本"])  # one more gram than 3: emptied first
    assert again.tolist() == [h for tokens in rensa_hashes(["語で", "é日本"]) for h in tokens]
    assert list(grams.other.values()) == rensa_hashes(["é日本"])[0]


def test_signatures_are_rensas_minhash_of_the_shingles():
    expected = rensa.RMinHash.digest_matrix_from_token_sets([shingles(t) for t in TOKEN_TEXTS], 120, 42).to_rows()
    signed = audit_module.signatures(TOKEN_TEXTS)
    assert signed.dtype == np.uint16 and signed.shape == (len(TOKEN_TEXTS), 120)
    assert signed.tolist() == [[value & 0xFFFF for value in row] for row in expected]


def counting_signatures(monkeypatch) -> list[list[str]]:
    """Every batch of texts `signatures` is asked for, from now on."""
    asked, sign = [], audit_module.signatures

    def counted(texts):
        asked.append(list(texts))
        return sign(texts)

    monkeypatch.setattr(audit_module, "signatures", counted)
    return asked


def test_recent_signatures_sign_each_text_once(monkeypatch):
    recent = audit_module._RecentSignatures()
    asked = counting_signatures(monkeypatch)
    texts = ["one text", "two texts", "three texts", "four texts"]
    keys = [audit_module._digest(text) for text in texts]
    assert recent.sign(keys[:2], texts[:2]).tolist() == audit_module.signatures(texts[:2]).tolist()
    assert recent.sign(keys[1:], texts[1:]).tolist() == audit_module.signatures(texts[1:]).tolist()
    assert asked == [texts[:2], texts[:2], ["three texts", "four texts"], texts[1:]]  # (and the two references)
    monkeypatch.setattr(audit_module._RecentSignatures, "SIZE", 5)
    asked.clear()
    assert recent.sign(keys[:1] + [7, 8], ["one text", "five", "six"]).tolist() == (
        audit_module.signatures(["one text", "five", "six"]).tolist()
    )
    assert asked[0] == ["five", "six"] and recent.slots == {7: 0, 8: 1}  # 4 + 2 is above 5: emptied first


def test_a_chunk_of_this_process_signs_nothing_and_a_text_is_signed_once(monkeypatch):
    asked = counting_signatures(monkeypatch)
    rows = [({"sample_id": f"s{i}", "initial_query": text}, "train") for i, text in enumerate("aaa bbb ccc".split())]
    first, second = LeakageAudit().add_all(rows[:2]), LeakageAudit().add_all(rows[1:])
    merged = LeakageAudit().merge(first).merge(second)
    assert asked == []
    merged.to_dict()
    assert asked == [["aaa", "bbb", "ccc"]]
    asked.clear()
    monkeypatch.setattr(audit_module, "_RECENT", audit_module._RecentSignatures())  # a fresh worker's
    pickle.dumps(LeakageAudit().add_all(rows[1:]))  # as a worker hands a chunk back: signed
    pickle.dumps(LeakageAudit().add_all(rows))  # its next chunk: only the text new to the worker is signed
    assert asked == [["bbb", "ccc"], ["aaa"]]


def test_texts_of_reads_what_a_row_has():
    sample = {"original_query": "A b", "initial_query": "?!", "full_conversation": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Bye."}]}  # fmt: skip
    assert texts_of(sample) == {"original_query": "a b", "conversation": "hi\nbye"}
    assert texts_of({"messages": [{"role": "user", "content": "Yo"}]}) == {"conversation": "yo"}
    assert texts_of({"prompt_trajectory": ["One", "Two"]}) == {"conversation": "one\ntwo"}


def test_the_leaky_store_is_split_as_designed():
    assert {sample["sample_id"]: split for sample, split in leaky_samples()} == {
        "sample_t1": "train", "sample_t2": "train", "sample_t3": "train", "sample_v1": "validation",
        "sample_x1": "test", "sample_x2": "test", "sample_x3": "test",
    }  # fmt: skip
    # near duplicates by design, well above the threshold; every other cross-split pair well below it
    assert round(jaccard(LEAKY["v1"][2][0], LEAKY["t3"][2][0]), 2) == 0.92
    assert round(jaccard(conversation("x2"), conversation("t2")), 2) == 0.93
    assert round(jaccard(LEAKY["x2"][1], LEAKY["t2"][1]), 2) == 0.64
    assert round(jaccard(LEAKY["x1"][2][0], LEAKY["t1"][2][0]), 2) == 0.45


def strip_estimates(leakage: dict) -> dict:
    """The near examples' estimated similarities, checked on their own (they are MinHash estimates)."""
    for pair in leakage["pairs"].values():
        for name in audit_module.FIELDS:
            pair[name]["near_examples"] = [example[:2] for example in pair[name]["near_examples"]]
    return leakage


def field(rows, exact, near, exact_examples=(), near_examples=()):
    return {
        "rows": rows,
        "exact": exact,
        "exact_share": round(exact / rows, 4),
        "exact_examples": [list(e) for e in exact_examples],
        "near": near,
        "near_share": round(near / rows, 4),
        "near_examples": [list(e) for e in near_examples],
    }


NO_PERSONAS = {"shared": 0, "share": 0.0, "examples": []}
EXPECTED_PAIRS = {
    "train-validation": {
        "smaller": "validation",
        "personas": NO_PERSONAS,
        "original_query": field(1, 1, 1, [("sample_v1", "sample_t3")]),
        "initial_query": field(1, 0, 1, near_examples=[("sample_v1", "sample_t3")]),
        "conversation": field(1, 0, 1, near_examples=[("sample_v1", "sample_t3")]),
    },
    "train-test": {
        "smaller": "test",  # 3 samples each: the later split is counted
        "personas": NO_PERSONAS,
        "original_query": field(3, 1, 1, [("sample_x1", "sample_t1")]),
        "initial_query": field(3, 1, 1, [("sample_x2", "sample_t2")]),
        "conversation": field(3, 0, 1, near_examples=[("sample_x2", "sample_t2")]),
    },
    "validation-test": {
        "smaller": "validation",
        "personas": NO_PERSONAS,
        "original_query": field(1, 0, 0),
        "initial_query": field(1, 0, 0),
        "conversation": field(1, 0, 0),
    },
}


def test_leaky_store_figures():
    leakage = LeakageAudit().add_all(leaky_samples()).to_dict()
    assert leakage["samples"] == {"train": 3, "validation": 1, "test": 3}
    assert leakage["max_share"] == 1.0
    assert leakage["method"] == {
        "normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed",
        "threshold": 0.8,
        "shingles": "character 3-grams",
        "minhash": f"rensa {audit_module.method()['minhash'].split()[1]} RMinHash, 120 permutations, seed 42",
        "lsh": "20 bands of 6 rows, 4 checks per bucket",
    }
    estimates = {
        (key, name): example[2]
        for key, pair in leakage["pairs"].items()
        for name in audit_module.FIELDS
        for example in pair[name]["near_examples"]
    }
    truth = {
        ("train-validation", "initial_query"): jaccard(LEAKY["v1"][2][0], LEAKY["t3"][2][0]),
        ("train-validation", "conversation"): jaccard(conversation("v1"), conversation("t3")),
        ("train-test", "conversation"): jaccard(conversation("x2"), conversation("t2")),
    }
    assert estimates.keys() == truth.keys()
    for where, estimate in estimates.items():
        assert 0.8 <= estimate <= 1.0 and abs(estimate - truth[where]) <= 0.1, where
    assert strip_estimates(leakage)["pairs"] == EXPECTED_PAIRS


def test_exact_only_audit_needs_no_rensa(monkeypatch):
    monkeypatch.setitem(sys.modules, "rensa", None)  # as if it were not installed
    with pytest.raises(MissingExtra) as error:
        LeakageAudit()
    assert str(error.value) == (
        "near-duplicate detection needs rensa, which is not installed: pip install 'personagym-hf[audit]'"
    )
    leakage = LeakageAudit(near=False).add_all(leaky_samples()).to_dict()
    assert leakage["method"] == {"normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed"}
    expected = {
        key: {
            name: {k: v for k, v in part.items() if not k.startswith("near")} if name in audit_module.FIELDS else part
            for name, part in pair.items()
        }
        for key, pair in EXPECTED_PAIRS.items()
    }
    assert leakage["pairs"] == expected


def test_personas_in_two_splits_are_counted():
    rows = [
        ({"sample_id": "a", "persona_id": "p1", "initial_query": "one"}, "train"),
        ({"sample_id": "b", "persona_id": "p2", "initial_query": "two"}, "train"),
        ({"sample_id": "c", "persona_id": "p1", "initial_query": "three"}, "test"),
        ({"sample_id": "d", "persona_id": "p3", "initial_query": "four"}, "test"),
    ]
    pair = LeakageAudit().add_all(rows).to_dict()["pairs"]["train-test"]
    assert pair["personas"] == {"shared": 1, "share": 0.5, "examples": ["p1"]}
    assert pair["original_query"]["rows"] == 0 and pair["original_query"]["exact_share"] == 0.0


def test_same_figures_for_any_order_chunking_and_batch_size(monkeypatch):
    samples = leaky_samples() * 3  # repeats are samples too: three rows per text
    whole = LeakageAudit().add_all(samples).to_dict()
    chunks = [LeakageAudit().add_all(samples[i : i + 4]) for i in range(0, len(samples), 4)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + pickle.loads(pickle.dumps(chunk))  # as a worker process would hand it back
    assert merged.to_dict() == whole
    # chunks of this process (texts waiting) and of workers (signed) in any mix, also with texts waiting here when
    # a signed chunk comes
    mixed = LeakageAudit()
    for number, chunk in enumerate(LeakageAudit().add_all(samples[i : i + 4]) for i in range(0, len(samples), 4)):
        mixed.merge(pickle.loads(pickle.dumps(chunk)) if number % 2 else chunk)
    assert mixed.to_dict() == whole
    monkeypatch.setattr(audit_module, "BATCH", 2)  # signatures computed two texts at a time
    assert LeakageAudit().add_all(samples).to_dict() == whole
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)
    again = LeakageAudit().add_all(shuffled).to_dict()
    assert again == whole  # each text's first sample per split is the same sample here


def test_near_duplicates_match_exact_jaccard_on_template_queries():
    """Queries written from a few templates fill LSH buckets with hundreds of texts. The test queries found to have
    a near duplicate in train are as many as their exact Jaccard says, within the estimate's noise: at least those
    whose best train match has a true Jaccard >= 0.85, at most those >= 0.75."""
    rng = random.Random(3)
    templates = [
        "please explain how {} works",
        "could you kindly plan a trip to {} for me",
        "{}: summarise it briefly",
    ]
    words = ["compound interest", "kyoto", "the french revolution", "sql", "react", "a csv file", "nara", "tea"]
    texts = []
    for _ in range(600):
        text = rng.choice(templates).format(rng.choice(words))
        chars = list(text)
        for _ in range(rng.randint(0, 3)):  # typos
            chars[rng.randrange(len(chars))] = rng.choice("aeiouxyz")
        texts.append("".join(chars))
    splits = [rng.choice(["train", "train", "test"]) for _ in texts]
    rows = [({"sample_id": f"s{i:03d}", "initial_query": t}, s) for i, (t, s) in enumerate(zip(texts, splits))]
    figures = LeakageAudit().add_all(rows).to_dict()["pairs"]["train-test"]["initial_query"]
    train = [t for t, s in zip(texts, splits) if s == "train"]
    best = [max(jaccard(t, other) for other in train) for t, s in zip(texts, splits) if s == "test"]
    assert figures["rows"] == len(best) == 174
    assert sum(b >= 0.85 for b in best) == 79 <= figures["near"] <= sum(b >= 0.75 for b in best) == 120
    assert figures["exact"] == sum(b == 1.0 for b in best)


def test_more_than_eight_splits_is_an_error():
    audit = LeakageAudit(near=False)
    for number in range(8):
        audit.add({"sample_id": str(number)}, f"split{number}")
    with pytest.raises(ValueError, match=r"^LeakageAudit: at most 8 splits, got a ninth \('split8'\)$"):
        audit.add({"sample_id": "8"}, "split8")


def test_report_lines_and_leaks():
    leakage = LeakageAudit().add_all(leaky_samples()).to_dict()
    for pair in leakage["pairs"].values():  # the estimates are checked in test_leaky_store_figures
        for name in audit_module.FIELDS:
            pair[name]["near_examples"] = [[*example[:2], 0.9] for example in pair[name]["near_examples"]]
    lines = report_lines(leakage)
    assert lines[0].startswith("near duplicates: estimated Jaccard >= 0.8 over character 3-grams (rensa ")
    assert lines[1:] == [
        "train <-> validation (3 and 1 samples): 0 personas shared",
        "  original_query: 1 of 1 validation rows (100.0%) have an exact duplicate in train, 1 (100.0%) an exact or "
        "near one",
        "    exact: sample_v1 = sample_t3",
        "  initial_query: 0 of 1 validation rows (0.0%) have an exact duplicate in train, 1 (100.0%) an exact or near "
        "one",
        "    near: sample_v1 ~ sample_t3 (0.9)",
        "  conversation: 0 of 1 validation rows (0.0%) have an exact duplicate in train, 1 (100.0%) an exact or near "
        "one",
        "    near: sample_v1 ~ sample_t3 (0.9)",
        "train <-> test (3 and 3 samples): 0 personas shared",
        "  original_query: 1 of 3 test rows (33.3%) have an exact duplicate in train, 1 (33.3%) an exact or near one",
        "    exact: sample_x1 = sample_t1",
        "  initial_query: 1 of 3 test rows (33.3%) have an exact duplicate in train, 1 (33.3%) an exact or near one",
        "    exact: sample_x2 = sample_t2",
        "  conversation: 0 of 3 test rows (0.0%) have an exact duplicate in train, 1 (33.3%) an exact or near one",
        "    near: sample_x2 ~ sample_t2 (0.9)",
        "validation <-> test (1 and 3 samples): 0 personas shared",
        *[
            f"  {name}: 0 of 1 validation rows (0.0%) have an exact duplicate in test, 0 (0.0%) an exact or near one"
            for name in ("original_query", "initial_query", "conversation")
        ],
    ]
    assert leaks(leakage, 0.4) == [
        "train <-> validation: 100.0% of validation original_queries have an exact or near duplicate in train",
        "train <-> validation: 100.0% of validation initial_queries have an exact or near duplicate in train",
        "train <-> validation: 100.0% of validation conversations have an exact or near duplicate in train",
    ]
    assert leaks(leakage, 1.0) == []
    assert summary_line(leakage, 1.0) is None
    assert summary_line(leakage, 0.3) == (
        "leakage: train <-> validation: 100.0% of validation original_queries have an exact or near duplicate in "
        "train; train <-> validation: 100.0% of validation initial_queries have an exact or near duplicate in train "
        "(+4 more; run `personagym-hf audit`)"
    )


def test_one_split_has_nothing_to_compare():
    leakage = LeakageAudit().add_all([({"sample_id": "a", "initial_query": "x"}, "train")]).to_dict()
    assert leakage["pairs"] == {} and leakage["max_share"] == 0.0
    assert report_lines(leakage)[1:] == ["one split (train): nothing to compare"]


def test_split_names_are_reported_in_split_order():
    rows = [({"sample_id": name, "initial_query": name}, name) for name in reversed(SPLIT_NAMES)]
    assert list(LeakageAudit(near=False).add_all(rows).to_dict()["pairs"]) == [
        "train-validation", "train-test", "validation-test"
    ]  # fmt: skip


def test_a_process_forked_after_rensa_batches_signs_one_text_at_a_time_with_the_same_signatures(monkeypatch):
    from personagym_hf.measure import leakage as audit

    texts = [
        audit.normalise(t) for t in ("Plan a trip to Kyoto", "plan a trip to kyoto!", "ok", "Ünïcödé 東京 🙂 text")
    ]
    batched = audit.signatures(texts)
    assert audit._batches_run
    monkeypatch.setattr(audit, "_pool_lost", True)
    monkeypatch.setattr(audit, "token_hashes", None)  # the one-at-a-time path hashes no batch
    assert np.array_equal(audit.signatures(texts), batched)
