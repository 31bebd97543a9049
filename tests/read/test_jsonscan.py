"""The structural scan of JSON arrays (`jsonscan.py`): against a byte-at-a-time reference, for every block size,
and its pieces against the decoder's items."""

import json
import random

import pytest

from personagym_hf.read.jsonscan import ArrayPlan, ArrayScan, Piece, file_blocks, plan_array


def reference(text: bytes):
    """The scan's rules, a byte at a time: (not an array, commas between items, end, first byte after the end that
    is not blank)."""
    started, depth, in_string, escape, end, after, commas = False, 0, False, False, -1, -1, []
    for at, byte in enumerate(text):
        char = chr(byte)
        if end >= 0:
            if after < 0 and char not in " \t\r\n":
                after = at
            continue
        if not started:
            if char in " \t\r\n":
                continue
            if char != "[":
                return True, [], -1, -1
            started, depth = True, 1
            continue
        if escape:
            escape = False
            continue
        if char == "\\":
            escape = True
        elif char == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                end = at
        elif char == "," and depth == 1:
            commas.append(at)
    return False, commas, end, after


def scanned(text: bytes, block: int):
    scan = ArrayScan()
    commas = []
    for start in range(0, len(text), block):
        commas += scan.feed(text[start : start + block]).tolist()
    return scan.not_array, commas, scan.end, scan.text_after


ALPHABET = b'[]{},"\\\\\\ a1:\n'  # backslashes weigh three times: runs of every length


def random_texts(count: int, seed: int = 7):
    rng = random.Random(seed)
    for _ in range(count):
        yield b"[" + bytes(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 80)))


def test_the_scan_finds_what_the_reference_finds_for_every_block_size():
    for text in random_texts(3000):
        expected = reference(text)
        for block in (1, 2, 3, 7, 64):
            assert scanned(text, block) == expected, (text, block)


def test_a_scan_started_just_after_a_comma_goes_on_as_the_whole_scan():
    for text in random_texts(1000, seed=11):
        _, commas, end, _ = reference(text)
        for comma in commas:
            scan = ArrayScan(inside=True)
            tail = scan.feed(text[comma + 1 :]).tolist()
            assert [comma + 1 + c for c in tail] == [c for c in commas if c > comma]
            assert (scan.end + comma + 1 if scan.end >= 0 else -1) == end


def test_text_that_is_no_array_is_seen_at_its_first_byte():
    for text in (b'  {"a": [1, 2]}', b"\xef\xbb\xbf[1]", b"1", b"  \n"):
        scan = ArrayScan()
        scan.feed(text)
        assert (scan.not_array, scan.started) == (text.strip() != b"", False)
    assert plan_array([b'{"a": 1}'], 10) is None
    assert plan_array([b"  ", b"\n"], 10) is None


def items_of(text: bytes, plan: ArrayPlan) -> list:
    return [json.loads(b"[" + text[p.start : p.stop] + b"]") for p in plan.pieces]


def test_pieces_hold_the_items_and_each_ends_at_the_first_comma_past_its_size():
    values = [{"n": n, "text": 'a, [b] {c} "d" \\' * (n % 5)} for n in range(200)]
    text = json.dumps(values, indent=1).encode()
    for piece_bytes in (1, 100, 1000, 5000, len(text)):
        for block in (13, 4096, len(text)):
            plan = plan_array((text[i : i + block] for i in range(0, len(text), block)), piece_bytes)
            assert plan.end == len(text) - 1 and plan.text_after == -1
            assert [v for items in items_of(text, plan) for v in items] == values
            firsts = [sum(p.items for p in plan.pieces[:i]) for i in range(len(plan.pieces))]
            assert [p.first_item for p in plan.pieces] == firsts
            assert sum(p.items for p in plan.pieces) == 200
            for piece in plan.pieces[:-1]:
                assert text[piece.stop : piece.stop + 1] == b","
                # the cut is the first comma between items at or past piece_bytes from the start
                assert piece.stop - piece.start >= piece_bytes - 1
                assert len(json.loads(b"[" + text[piece.start : piece.stop] + b"]")) == piece.items
            if piece_bytes == 1:
                assert [p.items for p in plan.pieces] == [1] * 200
            if piece_bytes == len(text):
                assert len(plan.pieces) == 1


def test_the_exact_pieces_of_a_small_array():
    text = b' [1, {"a": ","}, "x\\"]", [2,3]] '
    assert plan_array([text], 1) == ArrayPlan(
        [Piece(2, 3, 0, 1), Piece(4, 15, 1, 1), Piece(16, 23, 2, 1), Piece(24, 30, 3, 1)], 30, -1
    )
    assert plan_array([text], 12) == ArrayPlan([Piece(2, 15, 0, 2), Piece(16, 30, 2, 2)], 30, -1)


def test_how_an_array_ends():
    assert plan_array([b"[ \n ]"], 10) == ArrayPlan([Piece(1, 4, 0, 0)], 4, -1)  # no item at all
    assert plan_array([b"[ , ]"], 10) == ArrayPlan([Piece(1, 4, 0, 2)], 4, -1)  # two empty ones
    assert plan_array([b"[1, 2", b"  "], 1) == ArrayPlan([Piece(1, 2, 0, 1), Piece(3, 7, 1, 0)], -1, -1)  # cut short
    assert plan_array([b'[1, "]'], 100) == ArrayPlan([Piece(1, 6, 0, 1)], -1, -1)  # the file ends in a string
    assert plan_array([b"[1}  x", b"y"], 100) == ArrayPlan([Piece(1, 2, 0, 1)], 2, 5)  # closed by a brace, text after
    assert plan_array([b"[1] ", b" ", b"[2]"], 100) == ArrayPlan([Piece(1, 2, 0, 1)], 2, 5)


def test_file_blocks_reads_a_window_of_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 10)
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        blocks = [bytes(b) for b in file_blocks(fd, 5, 1000, block=300)]
        assert [len(b) for b in blocks] == [300, 300, 300, 95]
        assert b"".join(blocks) == path.read_bytes()[5:1000]
        assert b"".join(bytes(b) for b in file_blocks(fd, 2000, 9000, block=300)) == path.read_bytes()[2000:]
    finally:
        os.close(fd)


@pytest.mark.parametrize("block", [1, 5, 1 << 20])
def test_escapes_carried_across_blocks(block):
    text = b'["a\\\\", "b\\\\\\"", "c\\\\\\\\\\"x"]'
    assert json.loads(text) == ["a\\", 'b\\"', 'c\\\\"x']
    assert scanned(text, block) == reference(text) == (False, [6, 15], len(text) - 1, -1)
