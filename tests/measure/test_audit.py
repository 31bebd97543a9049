import os
import pickle
import random
import threading
import time

import numpy as np
import pytest
from conftest import LEAKY
from leaky import EXPECTED_PAIRS, leaky_samples, strip_estimates

from personagym_hf.config import SPLIT_NAMES
from personagym_hf.measure import leakage as audit_module
from personagym_hf.measure import minhash
from personagym_hf.measure.leakage import (
    LeakageAudit,
    LeakageOptions,
    leaks,
    normalise,
    report_lines,
    shingles,
    summary_line,
    texts_of,
)
from personagym_hf.measure.minhash import PIECE_CHARS, RecentSignatures, Sketcher, digest, pieces


def jaccard(a: str, b: str) -> float:
    first, second = set(shingles(normalise(a))), set(shingles(normalise(b)))
    return len(first & second) / len(first | second)


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


def test_a_long_text_is_normalised_a_piece_at_a_time():
    words = " ".join(f"Wörd{i}," for i in range(PIECE_CHARS // 4))  # 2.5 pieces of text with spaces
    parts = list(pieces(words))
    assert len(parts) == 3 and all(len(part) <= PIECE_CHARS for part in parts)
    assert normalise(words) == " ".join(parts) == minhash._normalise(words)  # cut at spaces: as if whole
    # no whitespace: cut where the next character does not combine with the one before it (é stays whole)
    glued = "a" * (PIECE_CHARS - 1) + "e\u0301" + "B" * 10
    assert list(pieces(glued)) == ["a" * (PIECE_CHARS - 1) + "é", "b" * 10]
    assert normalise(glued) == "a" * (PIECE_CHARS - 1) + "é " + "b" * 10


def test_shingles_are_character_3_grams_or_the_whole_short_text():
    assert shingles("plan a") == ["pla", "lan", "an ", "n a"]
    assert shingles("ok") == ["ok"]


def splitmix(x: int) -> int:
    mask = (1 << 64) - 1
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def gram_hash(gram: str) -> int:
    """The sketch's hash of a 3-gram (or of a shorter text), written out in plain Python."""
    points = ([ord(c) for c in gram] + [0x1FFFFF] * 3)[:3]
    key = points[0] << 42 | points[1] << 21 | points[2]
    return splitmix(key ^ (minhash.SEED * 0x9E3779B97F4A7C15 & (1 << 64) - 1))


def reference_signature(turns: list[str]) -> list[int]:
    """One-permutation MinHash of the union of the turns' 3-grams (each gram in 3 bins), with optimal densification,
    in plain Python: what the vectorised `signatures` must give."""
    bins = [None] * minhash.BINS
    for gram in {gram for turn in turns for gram in shingles(turn)}:
        h = gram_hash(gram)
        for slot in range(minhash.SLOTS):
            at, value = h >> (57 - 7 * slot) & 127, h >> (14 * slot) & 0x3FFF
            bins[at] = value if bins[at] is None else min(bins[at], value)
    filled = []
    for i, value in enumerate(bins):
        for probe in minhash._PROBES[:, i].tolist():
            if value is None:
                value = bins[probe]
        distance = 0
        while value is None:  # no probe found one: the next bin to the right that has a value
            distance += 1
            value = bins[(i + distance) % minhash.BINS]
        filled.append(value & 0xFF)
    return filled


# The texts of one batch: common ASCII; accents, CJK and an emoji (outside the BMP) in and next to common characters;
# control characters; texts shorter than a 3-gram first, in the middle and last (a window must not cross into the
# next text, nor wrap around).
TOKEN_TEXTS = ["a", "abcd", "café au lait", "日本", "日本語で", "xy😀z", "hi\nbye", "\x01ab\x7f", "ok", "z", "plan a"]


def test_gram_hashes_are_the_hashes_of_the_shingles():
    hashes, owners = minhash.gram_hashes(TOKEN_TEXTS)
    expected = [(number, gram_hash(gram)) for number, text in enumerate(TOKEN_TEXTS) for gram in shingles(text)]
    assert sorted(zip(owners.tolist(), hashes.tolist())) == sorted(expected)


def test_signatures_are_a_one_permutation_minhash_of_the_shingles():
    signed = minhash.signatures(TOKEN_TEXTS, np.arange(len(TOKEN_TEXTS)), len(TOKEN_TEXTS))
    assert signed.dtype == np.uint8 and signed.shape == (len(TOKEN_TEXTS), 128)
    assert signed.tolist() == [reference_signature([text]) for text in TOKEN_TEXTS]


def test_a_conversation_is_signed_as_the_union_of_its_turns_grams():
    sketcher = Sketcher(1000, 4000, recent=RecentSignatures())
    key = sketcher.add(["Plan a trip", "to Kyoto!", "?!"])  # the last turn normalises to nothing
    assert key == digest("plan a trip\nto kyoto\n")
    assert sketcher.samples == ["plan a trip", "to kyoto"]
    assert sketcher.sign().tolist() == [reference_signature(["plan a trip", "to kyoto"])]  # no gram spans turns


def test_the_shingled_sample_of_a_text_is_bounded_and_its_digest_is_of_the_whole():
    sketcher = Sketcher(turn_chars=4, text_chars=6, recent=RecentSignatures())
    assert sketcher.add(["Hello world", "Second turn", "third"]) == digest("hello world\nsecond turn\nthird")
    assert sketcher.samples == ["hell", "se"]  # 4 of the first turn, what is left of 6 of the second, none after
    long_turn = " ".join(f"Word{i}" for i in range(PIECE_CHARS // 3))  # normalised a piece at a time
    assert sketcher.add([long_turn]) == digest(normalise(long_turn))
    assert sketcher.samples[2:] == ["word"]
    assert sketcher.add(["?!", ""]) is None  # nothing left after normalising: no text
    assert sketcher.sign().shape == (2, 128)


def test_a_text_is_signed_once_while_it_is_recent():
    recent = RecentSignatures(size=3)
    first = Sketcher(1000, 4000, recent=recent)
    for text in ("aaa", "bbb", "aaa"):  # the same text twice in one batch
        first.add([text])
    signed = first.sign()
    assert first.signed == 2 and signed[0].tolist() == signed[2].tolist() == reference_signature(["aaa"])
    second = Sketcher(1000, 4000, recent=recent)  # another audit of this process (a chunk's)
    second.add(["bbb"])
    second.add(["ccc"])
    assert second.sign().tolist() == [reference_signature(["bbb"]), reference_signature(["ccc"])]
    assert second.signed == 1 and sorted(recent.rows) == sorted(digest(t) for t in ("aaa", "bbb", "ccc"))
    second.add(["ddd"])  # one more than 3: emptied first
    second.sign()
    assert list(recent.rows) == [digest("ddd")]


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


def test_leaky_store_figures():
    leakage = LeakageAudit().add_all(leaky_samples()).to_dict()
    assert leakage["samples"] == {"train": 3, "validation": 1, "test": 3}
    assert leakage["max_share"] == 1.0
    assert leakage["method"] == {
        "normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed",
        "exact": "the whole normalised text (a conversation: its user turns), by 64-bit blake2b digest",
        "threshold": 0.8,
        "shingles": "character 3-grams of the first 1000 characters of each user turn or query, at most 4000 of a "
        "text",
        "minhash": "one-permutation MinHash, 128 bins, 3 bins a gram, optimal densification, 8 bits a bin, seed 42",
        "lsh": "21 bands of 6 bins; each text of the smaller split checked against at most 4 texts of the other "
        "split per band, the first in row order",
        "compared": "each pair's smaller split indexed, the other streamed against it",
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


def test_exact_only_audit():
    leakage = LeakageAudit(near=False).add_all(leaky_samples()).to_dict()
    assert leakage["method"] == {
        "normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed",
        "exact": "the whole normalised text (a conversation: its user turns), by 64-bit blake2b digest",
        "compared": "each pair's smaller split indexed, the other streamed against it",
    }
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


def test_same_figures_for_any_chunking_and_any_sizes(tmp_path):
    samples = leaky_samples() * 3  # repeats are samples too: three rows per text
    whole = LeakageAudit().add_all(samples).to_dict()
    chunks = [LeakageAudit().add_all(samples[i : i + 4]) for i in range(0, len(samples), 4)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + pickle.loads(pickle.dumps(chunk))  # as a worker process would hand it back
    assert merged.to_dict() == whole
    # chunks of this process (texts waiting) and of workers (signed) in any mix
    mixed = LeakageAudit()
    for number, chunk in enumerate(LeakageAudit().add_all(samples[i : i + 4]) for i in range(0, len(samples), 4)):
        mixed.merge(pickle.loads(pickle.dumps(chunk)) if number % 2 else chunk)
    assert mixed.to_dict() == whole
    # two texts signed at a time, rows spilled two at a time, compared three at a time against indexes of two
    # texts (several passes over the larger split)
    small = LeakageOptions(batch_chars=10, spill_rows=2, spill_id_bytes=20, block_rows=3, index_texts=2)
    spilling = LeakageAudit(options=small, spill_dir=tmp_path / "spill").add_all(samples)
    (folder,) = (tmp_path / "spill").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{split}-{name}.rows" for split in range(3) for name in sorted(audit_module.FIELDS)
    ] + ["ids"]
    assert spilling.ids_spilled > 150 and spilling.sample_id(0) == samples[0][0]["sample_id"]
    assert spilling.to_dict() == whole
    spilled = pickle.loads(pickle.dumps(spilling))  # with its spilled rows in it
    assert spilled.to_dict() == whole and spilled._folder is None
    spilling.close()
    assert not folder.exists()


def test_the_figures_read_spilled_sample_ids_once_per_pair_and_field(tmp_path, monkeypatch):
    """The examples' ids come from the spill file in one read per pair and field: opened once per id, it was a third
    of `to_dict`'s time at 100k samples whose queries all cross splits."""
    samples = leaky_samples() * 3
    whole = LeakageAudit().add_all(samples).to_dict()
    spilling = LeakageAudit(options=LeakageOptions(spill_id_bytes=20), spill_dir=tmp_path).add_all(samples)
    assert spilling.ids_spilled > 150
    opened = []

    def counting_open(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(audit_module, "open", counting_open, raising=False)
    assert spilling.to_dict() == whole
    # every row found (exact or near) is an example whose ids are looked up, before the first three are kept
    found = sum(pair[name]["near"] for pair in whole["pairs"].values() for name in audit_module.FIELDS)
    tallies = len(whole["pairs"]) * len(audit_module.FIELDS)
    assert found > tallies  # so one open per id would exceed the bound
    assert 0 < opened.count("ids") <= tallies
    assert spilling.sample_ids([0, 5, 0]) == {0: samples[0][0]["sample_id"], 5: samples[5][0]["sample_id"]}
    spilling.close()


def test_the_fields_are_compared_on_threads_with_the_same_figures(monkeypatch):
    """`to_dict` compares `threads` fields at once, each on a thread of its own: the figures are those of one
    thread, and fields 0 and 1 do run at the same time (each waits for the other at a barrier); one at a time, on
    the calling thread, when the smaller splits' rows, once per thread, would not fit in `index_texts`, or on one
    core."""
    monkeypatch.setattr(audit_module, "_cores", lambda: 4)
    samples = leaky_samples() * 3
    whole = LeakageAudit(options=LeakageOptions(threads=1)).add_all(samples).to_dict()
    ran_on, meet = [], None
    compare = LeakageAudit._compare

    def recording(self, field, pairs, stop=None):
        ran_on.append((field, threading.current_thread().name))
        if meet is not None and field < 2:
            meet.wait()  # raises BrokenBarrierError after its timeout unless the other field runs meanwhile
        return compare(self, field, pairs, stop)

    monkeypatch.setattr(LeakageAudit, "_compare", recording)
    for threads in (2, 3):
        ran_on.clear()
        meet = threading.Barrier(2, timeout=10)
        assert LeakageAudit(options=LeakageOptions(threads=threads)).add_all(samples).to_dict() == whole
        assert sorted(field for field, _ in ran_on) == [0, 1, 2]
        assert "MainThread" not in {name for _, name in ran_on}
    audit = LeakageAudit(options=LeakageOptions(threads=2)).add_all(samples)
    smaller = sum(audit.samples[audit.split_names.index(name)] for name in ("validation", "test"))
    ran_on.clear()
    meet = threading.Barrier(2, timeout=10)
    audit.options = LeakageOptions(threads=2, index_texts=2 * smaller)  # just fits: on threads
    assert audit.to_dict() == whole and "MainThread" not in {name for _, name in ran_on}
    ran_on.clear()
    meet = None
    audit.options = LeakageOptions(threads=2, index_texts=2 * smaller - 1)
    assert audit.to_dict() == whole and ran_on == [(field, "MainThread") for field in range(3)]
    ran_on.clear()
    audit.options = LeakageOptions(threads=2)
    monkeypatch.setattr(audit_module, "_cores", lambda: 1)
    assert audit.to_dict() == whole and ran_on == [(field, "MainThread") for field in range(3)]


@pytest.mark.parametrize("failing, slow", [(0, 1), (1, 0)], ids=["first_field_fails", "second_field_fails"])
def test_an_error_in_one_fields_comparison_stops_the_others(tmp_path, monkeypatch, failing, slow):
    """The error comes out of `to_dict` at once, whichever field it comes from, and the other field's thread stops
    at its next block, not at its end (a Ctrl-C in the main thread stops them the same way)."""
    monkeypatch.setattr(audit_module, "_cores", lambda: 2)
    samples = leaky_samples() * 60
    one_a_block = LeakageOptions(threads=2, spill_rows=1, block_rows=1)  # spilled rows are read a block at a time
    audit = LeakageAudit(options=one_a_block, spill_dir=tmp_path).add_all(samples)
    started, blocks, field_of = threading.Event(), [], threading.local()
    compare, first_occurrences = LeakageAudit._compare, audit_module._first_occurrences

    def failing_compare(self, field, pairs, stop=None):
        field_of.number = field
        if field == failing:
            assert started.wait(10)
            raise OSError("disk gone")
        return compare(self, field, pairs, stop)

    def slow_block(digests):  # one block of one row: 20 ms each, seconds for the whole field
        if field_of.number == slow:
            blocks.append(1)
            started.set()
            time.sleep(0.02)
        return first_occurrences(digests)

    monkeypatch.setattr(LeakageAudit, "_compare", failing_compare)
    monkeypatch.setattr(audit_module, "_first_occurrences", slow_block)
    audit._flush()
    streamed = len(audit.rows[audit.split_names.index("train"), slow])  # the larger split, a row a block
    start = time.monotonic()
    with pytest.raises(OSError, match="^disk gone$"):
        audit.to_dict()
    assert time.monotonic() - start < 2
    assert 1 <= len(blocks) <= 5 and streamed >= 150  # of the blocks the slow field streams


def test_the_figures_depend_on_each_splits_row_order_only():
    """What `personagym-hf audit --data` relies on: it reads an export split by split, the export audited the rows
    as the store gave them, splits interleaved."""
    samples = leaky_samples() * 2
    by_split = sorted(samples, key=lambda row: SPLIT_NAMES.index(row[1]))  # stable: each split's order kept
    assert by_split != samples
    assert LeakageAudit().add_all(by_split).to_dict() == LeakageAudit().add_all(samples).to_dict()


def test_the_spill_folder_is_removed_by_the_process_that_made_it_only(tmp_path):
    folder = tmp_path / "leakage-x"
    folder.mkdir()
    audit_module._remove_folder(str(folder), os.getpid() + 1)  # a forked worker's copy of the audit
    assert folder.exists()
    audit_module._remove_folder(str(folder), os.getpid())
    assert not folder.exists()


def crafted_rows(signatures: list[np.ndarray], digests: list[int], samples: list[int]) -> np.ndarray:
    rows = np.zeros(len(digests), dtype=audit_module.NEAR_ROW)
    rows["digest"], rows["sample"], rows["signature"] = digests, samples, np.array(signatures, dtype=np.uint8)
    return rows


@pytest.mark.parametrize("checks, found", [(5, False), (6, True)], ids=["checks_run_out", "enough_checks"])
def test_a_text_is_checked_against_at_most_checks_texts_per_band(checks, found):
    """One text of the smaller split; in the other, five texts that share its first band but are not similar, then
    one that shares only that band and is (108 of 128 bins agree). Each text is checked once, however often it
    comes back: the five take five checks, in row order, whatever the blocks."""
    mine = np.zeros(128, dtype=np.uint8)
    decoys = [np.r_[np.zeros(6), np.full(122, 200)] for _ in range(5)]
    twin = mine.copy()
    twin[6:126:6] = 7  # one bin of every band but the first differs
    index = audit_module._Index(
        audit_module._Distinct(crafted_rows([mine], [1], [0])), slice(None), True, LeakageOptions(checks=checks)
    )
    first = crafted_rows(decoys, [10, 11, 12, 13, 14], [1, 2, 3, 4, 5])
    index.near_block(first, np.arange(5))
    again = crafted_rows([decoys[0], twin], [10, 20], [6, 7])  # a decoy again, then the twin
    index.near_block(again, np.arange(2))
    assert index.reached.tolist() == [found]
    assert (index.match.tolist(), index.equal.tolist()) == (([7], [108]) if found else ([-1], [0]))
    assert index.budget.tolist() == [checks - 5 - found] + [checks] * 20  # the decoy again took no check


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
    assert lines[0] == (
        "near duplicates: estimated Jaccard >= 0.8 over character 3-grams of the first 1000 characters of each user "
        "turn or query, at most 4000 of a text (one-permutation MinHash, 128 bins, 3 bins a gram, optimal "
        "densification, 8 bits a bin, seed 42), after normalising case, whitespace and punctuation"
    )
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


def test_options_are_checked_and_audits_to_merge_agree():
    with pytest.raises(ValueError, match=r"^LeakageOptions: expected a threshold in \(0, 1\], got 0$"):
        LeakageOptions(threshold=0)
    with pytest.raises(ValueError, match=r"^LeakageOptions: expected spill_rows to be an integer >= 1, got 0$"):
        LeakageOptions(spill_rows=0)
    with pytest.raises(ValueError, match=r"^LeakageOptions: expected checks <= 255, got 256$"):
        LeakageOptions(checks=256)
    with pytest.raises(ValueError, match=r"^LeakageAudit.merge: both audits need the same near setting and options$"):
        LeakageAudit().merge(LeakageAudit(options=LeakageOptions(turn_chars=10)))
    LeakageAudit().merge(LeakageAudit(options=LeakageOptions(spill_rows=7)))  # sizes change no figure


def test_a_pickled_audit_leaves_the_signatures_this_process_remembers_behind():
    """A worker's chunk is pickled to the parent: not with the (up to 16,384) signatures its process remembers."""
    rows = [({"sample_id": f"s{i}", "initial_query": f"query number {i}"}, "train") for i in range(500)]
    LeakageAudit().add_all(rows)._flush()  # this process now remembers at least 500 signatures (64 KB)
    assert len(minhash.RECENT.rows) >= 500
    audit = LeakageAudit().add_all(leaky_samples())
    assert len(pickle.dumps(audit)) < 8192
    assert pickle.loads(pickle.dumps(audit)).sketcher.recent is minhash.RECENT
