import gzip
import json
import os
import pickle
import random

import pytest
from conftest import make_interaction

from personagym_hf.read import plan as plan_module
from personagym_hf.read.plan import (
    Files,
    Items,
    Range,
    chunk_files_count,
    describe,
    iter_chunk,
    iter_chunk_files,
    plan_chunks,
)
from personagym_hf.read.records import UNREADABLE, BadRecord, Record
from personagym_hf.read.sizes import ReadSizes
from personagym_hf.read.store import discover_paths, iter_file

# Every kind of line the reader tells apart, cut anywhere: blank and whitespace-only lines, CRLF, a lone \r inside
# a line (no line end for JSON Lines), invalid JSON, invalid UTF-8, non-objects, non-ASCII, no newline at the end.
TRICKY = b"".join(
    [
        b'{"n": 1}\n',
        b"\n",
        b" \t \r\n",
        b'{"n": 2, "text": "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xe2\x80\x94"}\r\n',
        b"{not json\n",
        b"[1, 2]\n",
        b'"a string"\r\n',
        b'{"n": 3, "cr": "a\rb"}\n',
        b'{"n": 4, "bad": "\xff\xfe"}\n',
        b"\n\n",
        b'{"n": 5}   \n',
        b"42\n",
        b'{"n": 6, "long": "' + b"x" * 90 + b'"}\n',
        b'{"n": 7}',
    ]
)


def oracle_cuts(data: bytes, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """(start, stop, first line) of each range, a line at a time: a range takes lines until it has chunk_bytes."""
    cuts, start, first_line, stop = [], 0, 1, 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        stop += len(line) + (stop + len(line) < len(data))  # the line and its newline (none after the last)
        if stop - start >= chunk_bytes or stop == len(data):
            if stop > start:
                cuts.append((start, stop, first_line))
            start, first_line = stop, number + 1
    return cuts


def records_of(files, sizes=ReadSizes()) -> list:
    return [record for path in files for record in iter_file(path, sizes)]


def read_plan(files, chunks) -> list:
    return [record for chunk in chunks for record in iter_chunk(files, chunk)]


def test_oracle_cuts_sanity():
    assert oracle_cuts(b"ab\ncd\nef", 1) == [(0, 3, 1), (3, 6, 2), (6, 8, 3)]
    assert oracle_cuts(b"ab\ncd\nef\n", 4) == [(0, 6, 1), (6, 9, 3)]
    assert oracle_cuts(b"ab\n\n\ncd\n", 100) == [(0, 8, 1)]


@pytest.mark.parametrize("block", [3, 16, 8 << 20], ids=["block3", "block16", "block8M"])
def test_any_cut_of_a_tricky_file_reads_what_the_whole_file_reads(tmp_path, block):
    sizes = ReadSizes(plan_block=block)
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(TRICKY)
    files = discover_paths(path)
    whole = list(iter_file(files[0]))
    bad = [(r.where, r.reason) for r in whole if isinstance(r, BadRecord)]
    assert bad == [  # what the file holds: the test must cover every kind of line
        ("line 5, column 2", "invalid JSON (unexpected character, expected a string key)"),
        ("line 6", "expected a JSON object, got list"),
        ("line 7", "expected a JSON object, got str"),
        ("line 8, column 18", "invalid JSON (unexpected control character in string)"),
        ("line 9, column 18", "invalid UTF-8"),
        ("line 13", "expected a JSON object, got int"),
    ]
    assert [(r.where, r.data["n"]) for r in whole if isinstance(r, Record)] == [
        ("line 1", 1),
        ("line 4", 2),
        ("line 12", 5),
        ("line 14", 6),
        ("line 15", 7),
    ]
    for chunk_bytes in range(1, len(TRICKY) + 2):
        chunks = plan_chunks(files, chunk_files=1000, chunk_bytes=chunk_bytes, sizes=sizes)
        cuts = oracle_cuts(TRICKY, chunk_bytes)
        if len(cuts) > 1:
            assert chunks == [Range(0, *cut, len(TRICKY)) for cut in cuts], chunk_bytes
        else:
            assert chunks == [Files(0, 1)], chunk_bytes
        assert read_plan(files, chunks) == whole, chunk_bytes


def realistic_store(root):
    """A store of every layout, with two large JSON Lines files among small files, a gzip and an array."""
    root.mkdir()
    (root / "a_one.json").write_text(json.dumps(make_interaction(1)), encoding="utf-8")
    lines = [json.dumps(make_interaction(n, initial_query=f"caf\u00e9 {n} \u65e5\u672c")) for n in range(2, 30)]
    lines[3] = "{broken"
    lines[7] = ""
    lines[11] = "[1]"
    lines[15] = json.dumps(make_interaction(99, initial_query="y" * 3000))  # longer than many a cut
    (root / "b_big.jsonl").write_bytes(("\r\n".join(lines[:14]) + "\n" + "\n".join(lines[14:])).encode())
    (root / "c_small.jsonl").write_text(json.dumps(make_interaction(40)) + "\n", encoding="utf-8")
    with gzip.open(root / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    (root / "e_array.json").write_text(json.dumps([make_interaction(50), make_interaction(51)]), encoding="utf-8")
    (root / "f_big.jsonl").write_text("\n".join(lines[::-1]) + "\n\n", encoding="utf-8")
    (root / "g_broken.jsonl").symlink_to("nowhere.jsonl")
    (root / "h_one.json").write_text(json.dumps(make_interaction(60)), encoding="utf-8")
    return discover_paths(root)


def test_any_plan_of_a_store_reads_what_its_files_read(tmp_path):
    files = realistic_store(tmp_path / "store")
    whole = records_of(files)
    assert sum(isinstance(r, BadRecord) for r in whole) == 7  # 2 lines in each big file, their gzip, the link
    sizes = {index: os.path.getsize(path) for index, path in enumerate(files) if path.endswith("big.jsonl")}
    rng = random.Random(14)
    cut_sizes = [1, 2, 3, 100, 1000, *(rng.randrange(1, 60_000) for _ in range(120))]
    cut_sizes += [size + delta for size in sizes.values() for delta in (-1, 0, 1)]
    for chunk_bytes in cut_sizes:
        chunk_files = rng.choice([1, 2, 3, 1000])
        chunks = plan_chunks(files, chunk_files, chunk_bytes)
        assert read_plan(files, chunks) == whole, (chunk_bytes, chunk_files)
        assert sum(map(chunk_files_count, chunks)) == len(files)
        for index, size in sizes.items():
            ranges = [c for c in chunks if isinstance(c, Range) and c.file == index]
            cuts = oracle_cuts(open(files[index], "rb").read(), chunk_bytes)
            assert [(r.start, r.stop, r.first_line) for r in ranges] == (cuts if len(cuts) > 1 else [])
            assert all(r.size == size for r in ranges)
        files_chunks = [c for c in chunks if isinstance(c, Files)]
        assert all(c.stop - c.start <= chunk_files for c in files_chunks)


def test_a_store_of_small_files_is_cut_by_chunk_files_only(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    for n in range(2500):
        (root / f"interaction_{n:05d}.{'jsonl' if n % 3 else 'json'}").write_text('{"n": 1}\n')
    files = discover_paths(root)
    assert plan_chunks(files, chunk_files=1000, chunk_bytes=64 << 20) == [
        Files(0, 1000),
        Files(1000, 2000),
        Files(2000, 2500),
    ]
    # 9 bytes each: none is cut, but a group holds at most 9 bytes of JSON Lines, so one .jsonl file each
    tight = plan_chunks(files, chunk_files=1000, chunk_bytes=9)
    assert [sum(files[i].endswith(".jsonl") for i in range(c.start, c.stop)) for c in tight] == [1] * 1666
    json_only = discover_paths(sorted(root.glob("*.json")))
    assert plan_chunks(json_only, chunk_files=1000, chunk_bytes=1) == [Files(0, 834)]  # a .json is never cut
    assert plan_chunks(discover_paths(root / "interaction_00001.jsonl"), 1000, 8) == [Files(0, 1)]  # one line
    assert plan_chunks([], 1000, 1) == []


def test_a_large_jsonl_file_ends_the_group_before_it_and_its_ranges_are_chunks_of_their_own(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    for name in ("a0", "a1", "a2", "a3", "a4"):
        (root / f"{name}.json").write_text("{}")
    (root / "b.jsonl").write_bytes(b"".join(b'{"k":"%02d"}\n' % n for n in range(10)))  # 10 lines of 11 bytes
    with gzip.open(root / "c0.jsonl.gz", "wb") as f:
        f.write(os.urandom(500))  # large, and stays whole: no byte of a gzip can be found without the ones before
    (root / "c1.json").write_text(json.dumps([{"k": n} for n in range(8)]))  # an array of 80 bytes: two pieces
    (root / "c2.jsonl").write_text('{"k": 1}\n')
    (root / "d.jsonl").write_text('{"k": "one line, longer than the cut of 40 bytes"}\n')
    (root / "e.json").write_text("{}")
    files = discover_paths(root)
    chunks = plan_chunks(files, chunk_files=2, chunk_bytes=40)
    assert chunks == [
        Files(0, 2),
        Files(2, 4),
        Files(4, 5),  # cut short by b.jsonl
        Range(5, 0, 44, 1, 110),  # the first newline at or past byte 39 is at byte 43
        Range(5, 44, 88, 5, 110),
        Range(5, 88, 110, 9, 110),
        Files(6, 7),  # cut short by c1.json
        Items(7, 1, 49, 0, 5, 80),  # items 0-4 are 10 bytes each: the first comma at or past byte 1 + 39 is at 49
        Items(7, 50, 79, 5, 3, 80, last=True, end=79),
        Files(8, 9),  # cut short by d.jsonl, over 40 bytes but one line: a chunk of its own, whole
        Files(9, 10),
        Files(10, 11),
    ]
    assert [chunk_files_count(c) for c in chunks] == [2, 2, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1]
    assert read_plan(files, chunks) == records_of(files)
    assert [describe(files, c) for c in chunks[2:5]] == [
        f"files[4:5] ({root.as_posix()}/a4.json)",
        f"{root.as_posix()}/b.jsonl bytes 0:44 of 110, from line 1",
        f"{root.as_posix()}/b.jsonl bytes 44:88 of 110, from line 5",
    ]
    assert describe(files, chunks[8]) == f"{root.as_posix()}/c1.json bytes 50:79 of 80, items 5:8"
    assert describe(files, chunks[0]) == f"files[0:2] ({root.as_posix()}/a0.json .. {root.as_posix()}/a1.json)"


def test_iter_chunk_files_names_the_file_of_each_record(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / "a.json").write_text(json.dumps(make_interaction(1)))
    (root / "b.jsonl").write_text("".join(json.dumps(make_interaction(n)) + "\n" for n in range(2, 6)))
    files = discover_paths(root)
    chunks = plan_chunks(files, chunk_files=1000, chunk_bytes=100)
    assert chunks[0] == Files(0, 1) and len(chunks) == 5
    named = [(index, r.where) for c in chunks for index, records in iter_chunk_files(files, c) for r in records]
    assert named == [(0, ""), (1, "line 1"), (1, "line 2"), (1, "line 3"), (1, "line 4")]


def test_chunks_are_small_and_pickle(tmp_path):
    for chunk in (Files(0, 1000), Range(3, 1 << 40, (1 << 40) + (64 << 20), 123_456_789, 1 << 41)):
        assert pickle.loads(pickle.dumps(chunk)) == chunk
        assert len(pickle.dumps(chunk)) < 120
    with pytest.raises(AttributeError):
        Files(0, 1).start = 2


@pytest.mark.parametrize(
    "chunk_files, chunk_bytes, message",
    [
        (0, 1, "chunk_files: expected an integer >= 1, got 0"),
        (1, 0, "chunk_bytes: expected an integer >= 1, got 0"),
        (True, 1, "chunk_files: expected an integer >= 1, got True"),
        (1, 2.5, "chunk_bytes: expected an integer >= 1, got 2.5"),
    ],
    ids=["no-files", "no-bytes", "bool", "float"],
)
def test_chunk_sizes_are_checked(chunk_files, chunk_bytes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        plan_chunks([], chunk_files, chunk_bytes)


def big_file(tmp_path, count=8):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(make_interaction(n)) + "\n" for n in range(count)), encoding="utf-8")
    files = discover_paths(path)
    line = len(json.dumps(make_interaction(0))) + 1
    chunks = plan_chunks(files, chunk_files=1000, chunk_bytes=2 * line)  # two lines a range
    assert [(c.first_line, c.stop - c.start) for c in chunks] == [(n, 2 * line) for n in range(1, count, 2)]
    return path, files, chunks


def test_a_file_gone_at_read_time_gives_its_one_bad_record_from_its_first_range(tmp_path):
    path, files, chunks = big_file(tmp_path)
    path.unlink()
    gone = path.as_posix()
    expected = [
        BadRecord(
            gone,
            "",
            f"cannot read file (FileNotFoundError: [Errno 2] No such file or directory: '{gone}')",
            kind=UNREADABLE,
        )
    ]
    assert list(iter_file(gone)) == expected
    assert [list(iter_chunk(files, c)) for c in chunks] == [expected, [], [], []]
    os.mkfifo(path)  # no regular file any more: never opened in a way that waits
    assert (
        read_plan(files, chunks)
        == list(iter_file(gone))
        == [BadRecord(gone, "", "not a regular file (a FIFO)", kind=UNREADABLE)]
    )


def test_a_fifo_with_a_jsonl_name_is_planned_whole_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo.jsonl")
    files = discover_paths(tmp_path)
    assert plan_chunks(files, chunk_files=1000, chunk_bytes=1) == [Files(0, 1)]


def test_a_file_that_shrank_since_planning_says_so_once(tmp_path):
    path, files, chunks = big_file(tmp_path)
    data = path.read_bytes()
    first = [list(iter_chunk(files, chunks[0]))]
    size = len(data)
    changed = f"the file changed since the export started (it had {size} bytes, it has {{}}); rerun the export"
    source = path.as_posix()
    path.write_bytes(data[: chunks[1].start + 10])  # the new end inside the second range
    assert [list(iter_chunk(files, c)) for c in chunks] == [
        *first,
        [BadRecord(source, "", changed.format(chunks[1].start + 10), kind=UNREADABLE)],
        [],
        [],
    ]
    path.write_bytes(data[: chunks[2].start])  # the new end at a cut: the range after it is the first one short
    assert [list(iter_chunk(files, c)) for c in chunks] == [
        *first,
        list(iter_chunk(files, chunks[1])),
        [BadRecord(source, "", changed.format(chunks[2].start), kind=UNREADABLE)],
        [],
    ]
    assert len(read_plan(files, chunks)) == 5


def test_a_file_that_grew_since_planning_is_read_as_planned(tmp_path):
    path, files, chunks = big_file(tmp_path)
    before = list(iter_file(path.as_posix()))
    with open(path, "ab") as f:
        f.write(json.dumps(make_interaction(100)).encode() + b"\n" + b'{"half a line')
    assert read_plan(files, chunks) == before
    assert len(list(iter_file(path.as_posix()))) == len(before) + 2  # what a new plan would read


def test_a_file_rewritten_with_its_lines_moved_says_so_from_each_range_that_sees_it(tmp_path):
    path, files, chunks = big_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(b" " + data[:-1])  # same size, every line one byte later
    source = path.as_posix()
    message = "the file changed since the export started (line {} no longer starts at byte {}); rerun the export"
    assert [list(iter_chunk(files, c))[-1:] for c in chunks[1:]] == [
        [BadRecord(source, "", message.format(c.first_line, c.start), kind=UNREADABLE)] for c in chunks[1:]
    ]
    assert [r.where for r in iter_chunk(files, chunks[0])] == ["line 1", "line 2"]


def test_a_read_error_inside_a_range_is_a_bad_record_after_the_records_read(tmp_path, monkeypatch):
    path, files, chunks = big_file(tmp_path)
    line = len(json.dumps(make_interaction(0))) + 1
    real_readv = os.readv

    def failing_readv(fd, buffers):  # fails once the first line is read
        if os.lseek(fd, 0, os.SEEK_CUR) >= line:
            raise OSError(5, "Input/output error")
        return real_readv(fd, buffers)

    monkeypatch.setattr(plan_module.os, "readv", failing_readv)
    source = path.as_posix()
    sizes = ReadSizes(range_buffer=64)  # a read a line: the failure comes after the first record
    assert [(r.source, r.where) for r in iter_chunk(files, chunks[0], sizes)][:1] == [(source, "line 1")]
    assert list(iter_chunk(files, chunks[0], sizes))[1:] == [
        BadRecord(source, "", "cannot read file (OSError: [Errno 5] Input/output error)", kind=UNREADABLE)
    ]


def test_a_file_that_shrinks_while_planned_is_planned_as_read(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(b'{"k":"%02d"}\n' % n for n in range(10))[:25])  # lines of 11 bytes, 25 bytes left
    real_open = plan_module._open_regular
    monkeypatch.setattr(plan_module, "_open_regular", lambda source: (real_open(source)[0], 110))  # fstat's size
    files = discover_paths(path)
    assert plan_chunks(files, chunk_files=1000, chunk_bytes=20) == [Range(0, 0, 22, 1, 25), Range(0, 22, 25, 3, 25)]
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert plan_module._line_cuts(fd, 110, 20, block=64) == [(0, 0, 1)]  # emptied: read whole (nothing), no range
    finally:
        os.close(fd)


def test_mid_sized_jsonl_files_are_grouped_up_to_chunk_bytes(tmp_path):
    """Files under chunk_bytes are not cut, but a group holds no more of their bytes than chunk_bytes (the file that
    would pass it starts the next group), so three mid-sized files are three chunks of work."""
    line = b'{"a": 1}\n'  # 9 bytes
    for name, lines in (("a.jsonl", 8), ("b.jsonl", 8), ("c.jsonl", 3), ("d.json", 1), ("e.jsonl", 8)):
        (tmp_path / name).write_bytes(line * lines)
    files = discover_paths(tmp_path)
    assert plan_chunks(files, chunk_files=1000, chunk_bytes=100) == [Files(0, 1), Files(1, 4), Files(4, 5)]
    assert plan_chunks(files, chunk_files=1000, chunk_bytes=1000) == [Files(0, 5)]


# Array files of every kind the reader tells apart: pretty-printed, with escapes and non-ASCII, with a damaged item, a
# non-object, invalid UTF-8, empty items, cut short in three ways, closed by a brace, text after the end, empty.
_ONE = json.dumps(make_interaction(1), indent=1, ensure_ascii=False).encode()
_TWO = json.dumps({**make_interaction(2), "initial_query": 'caf\u00e9, [x] {y} "q" \\ \u65e5'}).encode()
TRICKY_ARRAYS = {
    "a_pretty.json": b"[\n" + _ONE + b",\n" + _TWO + b"\n]\n",
    "b_damaged.json": b"[" + _ONE + b', {"a": tru}, 42, "s", [1, {"b": ","}], ' + _TWO + b"]",
    "c_utf8.json": b"[" + _ONE + b', {"k": "\xff\xfe"}, ' + _TWO + b"]",
    "d_empty_items.json": b"[" + _ONE + b", , " + _TWO + b",]",
    "e_cut_in_item.json": b"[" + _ONE + b", " + _TWO[:-40],
    "f_cut_after_item.json": b"[" + _ONE + b", " + _TWO,
    "g_cut_after_comma.json": b"[" + _ONE + b", " + _TWO + b",\n",
    "h_brace.json": b"[" + _ONE + b", " + _TWO + b"}",
    "i_text_after.json": b"[" + _ONE + b"]\n[" + _TWO + b"]\n",
    "j_empty.json": b" [ \n ] ",
    "k_string_cut.json": b"[" + _ONE + b', "abc\\", ' + _TWO,
    "l_blank_first.json": b"[    ,\n" + _ONE + b"]",
}


@pytest.fixture
def array_store(tmp_path):
    root = tmp_path / "arrays"
    root.mkdir()
    for name, text in TRICKY_ARRAYS.items():
        (root / name).write_bytes(text)
    return discover_paths(root)


def test_an_array_cut_anywhere_reads_as_the_whole_file(array_store):
    whole = records_of(array_store)
    assert sum(isinstance(r, Record) for r in whole) == 18 and sum(isinstance(r, BadRecord) for r in whole) == 15
    cut = set()
    for chunk_bytes in [1, 2, 3, 5, 8, 13, 50, 100, 400, 900, 1500, 10_000]:
        chunks = plan_chunks(array_store, chunk_files=1000, chunk_bytes=chunk_bytes)
        cut |= {array_store[c.file] for c in chunks if isinstance(c, Items)}
        assert read_plan(array_store, chunks) == whole, chunk_bytes
        assert pickle.loads(pickle.dumps(chunks)) == chunks
        assert sum(chunk_files_count(c) for c in chunks) == len(array_store)
    one_item = {"i_text_after.json", "j_empty.json"}  # one piece at most: always read whole
    assert {path.rsplit("/", 1)[-1] for path in cut} == set(TRICKY_ARRAYS) - one_item
    for block in (1, 7, 64):  # the scan's block size changes nothing either
        sizes = ReadSizes(scan_block=block)
        chunks = plan_chunks(array_store, chunk_files=1000, chunk_bytes=50, sizes=sizes)
        assert [r for chunk in chunks for r in iter_chunk(array_store, chunk, sizes)] == whole
        assert records_of(array_store, sizes) == whole
    for piece_bytes in (1, 64, 1 << 20):  # a file too big to read whole is read a piece at a time: the same records
        assert records_of(array_store, ReadSizes(whole_file_limit=0, piece_bytes=piece_bytes)) == whole


def test_the_records_of_tricky_arrays(array_store):
    read = {}
    for record in records_of(array_store):
        read.setdefault(record.source.rsplit("/", 1)[-1], []).append(
            record.data["interaction_id"][-4:] if isinstance(record, Record) else (record.where, record.reason)
        )
    one, two = "0001", "0002"
    at = len(_ONE) + 1
    assert read == {
        "a_pretty.json": [one, two],
        "b_damaged.json": [
            one,
            ("item 1", f"invalid JSON (invalid literal, expected 'true'; the item starts at byte {at + 2})"),
            ("item 2", "expected a JSON object, got int"),
            ("item 3", "expected a JSON object, got str"),
            ("item 4", "expected a JSON object, got list"),
            two,
        ],
        "c_utf8.json": [one, ("item 1", f"invalid UTF-8 at byte {at + 9}"), two],
        "d_empty_items.json": [
            one,
            ("item 1", f"invalid JSON (no value before the comma or bracket at byte {at + 2})"),
            two,
            ("item 3", f"invalid JSON (no value before the comma or bracket at byte {at + 5 + len(_TWO)})"),
        ],
        "e_cut_in_item.json": [one, ("item 1", "truncated JSON array (no closing ']')")],
        "f_cut_after_item.json": [one, two, ("item 2", "truncated JSON array (no closing ']')")],
        "g_cut_after_comma.json": [one, two, ("item 2", "truncated JSON array (no closing ']')")],
        "h_brace.json": [one, two, ("", f"invalid JSON (the array is closed by '}}' at byte {at + 2 + len(_TWO)})")],
        "i_text_after.json": [one, ("", f"invalid JSON (text after the array, at byte {at + 2})")],
        "k_string_cut.json": [
            one,
            # '"abc\", ' and the next item up to its first quote are one string: the item does not decode
            ("item 1", f"invalid JSON (unexpected content after document; the item starts at byte {at + 2})"),
            ("item 2", "truncated JSON array (no closing ']')"),
        ],
        "l_blank_first.json": [("item 0", "invalid JSON (no value before the comma or bracket at byte 5)"), one],
    }


def test_a_rewritten_array_gives_one_bad_record_from_each_piece_that_sees_it(tmp_path):
    path = tmp_path / "a.json"
    items = [{"k": n} for n in range(8)]
    path.write_text(json.dumps(items))
    files = discover_paths(path)
    chunks = plan_chunks(files, chunk_files=1000, chunk_bytes=40)
    assert [c.first_item for c in chunks] == [0, 5]
    path.write_text(json.dumps([{"kk": n} for n in range(8)]))  # each item one byte longer
    message = "the file changed since the export started (item {} no longer starts at byte {}); rerun the export"
    assert [list(iter_chunk(files, chunk)) for chunk in chunks] == [
        [BadRecord(path.as_posix(), "", message.format(0, 1), kind=UNREADABLE)],
        [BadRecord(path.as_posix(), "", message.format(5, 50), kind=UNREADABLE)],
    ]
    path.write_text(json.dumps(items) + "   ")  # blanks after the end change nothing
    assert [r.data for r in read_plan(files, chunks)] == items
    path.unlink()
    assert [r.reason.split(" (")[0] for r in read_plan(files, chunks)] == ["cannot read file"]  # once, from item 0


def test_upstream_files_are_not_looked_at_to_cut_them(tmp_path, monkeypatch):
    root = tmp_path / "store"
    root.mkdir()
    (root / "interaction_all.json").write_text(json.dumps([{"k": n} for n in range(50)]))
    (root / "all.json").write_text(json.dumps([{"k": n} for n in range(50)]))
    files = discover_paths(root)
    statted = []
    real_stat = plan_module.os.stat
    monkeypatch.setattr(plan_module.os, "stat", lambda p, *a, **k: statted.append(p) or real_stat(p, *a, **k))
    chunks = plan_chunks(files, chunk_files=1000, chunk_bytes=100)
    assert statted == [(root / "all.json").as_posix()]
    assert chunks[-1] == Files(1, 2) and all(isinstance(c, Items) and c.file == 0 for c in chunks[:-1])
    assert read_plan(files, chunks) == records_of(files)
