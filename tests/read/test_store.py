import gzip
import json
import os

import pytest
from conftest import make_interaction, write_files

from personagym_hf import InteractionStorage
from personagym_hf.read import store as store_module
from personagym_hf.read.records import INVALID_JSON, NOT_AN_OBJECT, UNREADABLE
from personagym_hf.read.sizes import ReadSizes
from personagym_hf.read.store import BadRecord, PathList, Record, discover_files, discover_paths, iter_records


def ids(records):
    return [r.data["interaction_id"] for r in records if isinstance(r, Record)]


def test_every_layout_is_read_in_path_order(tmp_path):
    root = tmp_path / "store"
    write_files(root / "a_files", [make_interaction(1), make_interaction(2)])
    (root / "b.jsonl").write_text(
        "\n".join(json.dumps(make_interaction(n)) for n in (3, 4)) + "\n\n", encoding="utf-8"
    )
    (root / "c_array.json").write_text(json.dumps([make_interaction(5), make_interaction(6)]), encoding="utf-8")
    with gzip.open(root / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps(make_interaction(7)) + "\n")
    with gzip.open(root / "e.json.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps([make_interaction(8)]))
    nested = root / "nested" / "deeper"
    write_files(nested, [make_interaction(9)])
    (root / "index.json").write_text(json.dumps({"interactions": [], "count": 0}), encoding="utf-8")
    (root / "token_usage_x.json").write_text(json.dumps({"records": []}), encoding="utf-8")
    (root / "notes.txt").write_text("not a store file", encoding="utf-8")
    records = list(iter_records(root))
    assert ids(records) == [f"interaction_persona_001_{n:04d}" for n in range(1, 10)]
    assert [(r.source.rsplit("/", 1)[-1], r.where) for r in records[2:6]] == [
        ("b.jsonl", "line 1"),
        ("b.jsonl", "line 2"),
        ("c_array.json", "item 0"),
        ("c_array.json", "item 1"),
    ]


def test_stale_or_missing_index_does_not_matter(tmp_path):
    root = write_files(tmp_path / "store", [make_interaction(1), make_interaction(2)])
    (root / "index.json").write_text(
        json.dumps({"interactions": [{"interaction_id": "gone", "filepath": "x.json"}], "count": 1}), encoding="utf-8"
    )
    assert len(ids(iter_records(root))) == 2
    (root / "index.json").unlink()
    assert len(ids(iter_records(root))) == 2


def test_bad_files_and_lines_are_reported_with_file_and_position(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    good = json.dumps(make_interaction(1))
    (root / "a_truncated.json").write_text(good[:40], encoding="utf-8")
    (root / "b.jsonl").write_text(good + "\n{not json\n[1, 2]\n", encoding="utf-8")
    (root / "c_latin1.json").write_bytes(json.dumps(make_interaction(3)).replace("hey", "h\u00e9y").encode("latin-1"))
    (root / "d.json.gz").write_bytes(b"not gzip at all")
    records = list(iter_records(root))
    bad = [(r.source.rsplit("/", 1)[-1], r.where, r.reason) for r in records if isinstance(r, BadRecord)]
    assert [b[:2] for b in bad] == [
        ("a_truncated.json", "line 1, column 41"),
        ("b.jsonl", "line 2, column 2"),
        ("b.jsonl", "line 3"),
        ("c_latin1.json", "line 1, column 243"),  # the é of "héy"
        ("d.json.gz", ""),
    ]
    assert bad[0][2] == "invalid JSON (unexpected end of data)"
    assert bad[1][2] == "invalid JSON (unexpected character, expected a string key)"
    assert bad[2][2] == "expected a JSON object, got list"
    assert bad[3][2] == "invalid UTF-8"
    assert bad[4][2].startswith("cannot read file (BadGzipFile:")
    assert ids(records) == ["interaction_persona_001_0001"]


def test_large_json_array_is_read_a_piece_at_a_time(tmp_path, monkeypatch):
    sizes = ReadSizes(whole_file_limit=10, piece_bytes=64)
    records = [make_interaction(n) for n in range(5)]
    records[2]["initial_query"] = "caf\u00e9 \u65e5\u672c"  # multi-byte characters across pieces
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    pieces = []
    real = store_module.array_records
    monkeypatch.setattr(store_module, "array_records", lambda *a: pieces.append(a[3]) or real(*a))
    read = list(iter_records(path, sizes))
    assert [r.data for r in read] == records
    assert [r.where for r in read] == [f"item {n}" for n in range(5)]
    assert pieces == [0, 1, 2, 3, 4]  # each item is over 64 bytes: a piece each
    text = json.dumps(records)
    path.write_text(text[:-300], encoding="utf-8")  # cut short inside the last item
    assert len(json.dumps(records[-1])) > 300
    read = list(iter_records(path, sizes))
    assert ids(read) == [r["interaction_id"] for r in records[:4]]
    assert read[4:] == [
        BadRecord(path.as_posix(), "item 4", "truncated JSON array (no closing ']')", kind=INVALID_JSON)
    ]


def test_a_damaged_array_is_read_item_by_item_whatever_its_size(tmp_path):
    good = [json.dumps(make_interaction(n)).encode() for n in range(3)]
    bad_item = b'{"interaction_id": tru}'
    text = b"[" + good[0] + b", " + bad_item + b",\n 42, , " + good[1] + b", " + good[2] + b"] x"
    path = tmp_path / "damaged.json"
    path.write_bytes(text)
    at, tru = text.index(bad_item), "invalid literal, expected 'true'"
    source = path.as_posix()
    expected = [
        BadRecord(source, "item 1", f"invalid JSON ({tru}; the item starts at byte {at})", kind=INVALID_JSON),
        BadRecord(source, "item 2", "expected a JSON object, got int", kind=NOT_AN_OBJECT),
        BadRecord(
            source,
            "item 3",
            f"invalid JSON (no value before the comma or bracket at byte {at + 30})",
            kind=INVALID_JSON,
        ),
        BadRecord(source, "", f"invalid JSON (text after the array, at byte {len(text) - 1})", kind=INVALID_JSON),
    ]
    for limit in (64 << 20, 10):  # read whole, and read a piece at a time
        read = list(iter_records(path, ReadSizes(whole_file_limit=limit)))
        assert ids(read) == [f"interaction_persona_001_000{n}" for n in range(3)]
        assert [r for r in read if isinstance(r, BadRecord)] == expected
        assert [r.where for r in read] == ["item 0", "item 1", "item 2", "item 3", "item 4", "item 5", ""]


def test_how_an_array_that_does_not_end_well_is_read(tmp_path):
    one = json.dumps(make_interaction(1))
    truncated = ("item 1", "truncated JSON array (no closing ']')")
    cases = {
        "cut_in_an_item.json": ("[" + one + ', {"interaction_id": "x', truncated),
        "cut_after_an_item.json": ("[" + one, truncated),
        "cut_after_a_comma.json": ("[" + one + ",\n ", truncated),
        "closed_by_a_brace.json": (
            "[" + one + "}",
            ("", f"invalid JSON (the array is closed by '}}' at byte {len(one) + 1})"),
        ),
        "two_arrays.json": (
            "[" + one + "]\n[" + one + "]",
            ("", f"invalid JSON (text after the array, at byte {len(one) + 3})"),
        ),
        "trailing_comma.json": (
            "[" + one + ",]",
            ("item 1", f"invalid JSON (no value before the comma or bracket at byte {len(one) + 2})"),
        ),
    }
    for name, (text, bad) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        read = list(iter_records(path))
        assert ids(read) == ["interaction_persona_001_0001"], name
        assert [(r.where, r.reason) for r in read if isinstance(r, BadRecord)] == [bad], name
    (tmp_path / "empty.json").write_text("[ \n ]")
    assert list(iter_records(tmp_path / "empty.json")) == []


def test_missing_store_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope: no such file or directory; pass --interactions"):
        discover_files(tmp_path / "nope")


def test_path_list_packs_paths_and_gives_them_back(tmp_path):
    paths = sorted(["/s/a/x_1.json", "/s/a/x_2.json", "/s/b/\u00e9t\u00e9.json", "/s/b/bad_\udcff.json"])
    packed = PathList(paths)
    assert packed.prefix == "/s/"
    assert len(packed) == 4
    assert list(packed) == paths
    assert [packed[-1], packed[0]] == [paths[-1], paths[0]]
    assert packed[1:3] == paths[1:3] and packed[3:10] == paths[3:]
    with pytest.raises(IndexError, match="PathList index out of range"):
        packed[4]
    single, empty = PathList(["/only.json"]), PathList([])
    assert (single.prefix, list(single)) == ("/only.json", ["/only.json"])  # the whole path is the prefix
    assert (len(empty), list(empty), empty[0:5]) == (0, [], [])


def test_discover_paths_is_sorted_without_repeats(tmp_path):
    write_files(tmp_path / "b", [make_interaction(1)])
    write_files(tmp_path / "a", [make_interaction(2), make_interaction(3)])
    found = discover_paths([tmp_path, tmp_path / "a"])  # "a" is named twice
    assert list(found) == sorted(p.as_posix() for p in tmp_path.rglob("interaction_*.json"))
    assert len(found) == 3 and isinstance(found, PathList)


def test_interaction_storage_save_load_and_index(tmp_path):
    storage = InteractionStorage(tmp_path / "interactions")
    first, second = make_interaction(1), make_interaction(2, persona="persona_002")
    path = storage.save(first)
    storage.save(second)
    assert path.name == "interaction_persona_001_0001.json"
    assert json.loads(path.read_text(encoding="utf-8")) == first
    index = json.loads((storage.path / "index.json").read_text(encoding="utf-8"))
    assert [e["interaction_id"] for e in index["interactions"]] == [first["interaction_id"], second["interaction_id"]]
    assert index["count"] == 2 and index["last_updated"] == "2026-02-06T10:02:00"
    assert index["interactions"][1]["persona_id"] == "persona_002"
    assert storage.load_all() == [first, second]
    assert storage.load(second["interaction_id"]) == second
    (storage.path / "index.json").unlink()  # the index is a shortcut, not the truth
    assert storage.load(second["interaction_id"]) == second
    assert storage.load("interaction_unknown") is None
    storage.save({**first, "num_turns": 2, "query_id": "q1"})
    index = json.loads((storage.path / "index.json").read_text(encoding="utf-8"))
    assert index["count"] == 2 and index["interactions"][-1]["query_id"] == "q1"
    assert not list(storage.path.glob(".*.tmp"))


def test_interaction_storage_iterates_without_a_list(tmp_path):
    storage = InteractionStorage(write_files(tmp_path / "s", [make_interaction(n) for n in range(3)]))
    iterator = storage.iter_all()
    assert next(iterator)["interaction_id"] == "interaction_persona_001_0000"
    assert InteractionStorage(tmp_path / "empty").load_all() == []


def test_a_file_that_cannot_be_read_is_one_bad_record(tmp_path):
    gone = (tmp_path / "gone.json").as_posix()
    assert list(store_module.iter_file(gone)) == [
        BadRecord(
            gone,
            "",
            f"cannot read file (FileNotFoundError: [Errno 2] No such file or directory: '{gone}')",
            kind=UNREADABLE,
        )
    ]


def test_a_file_that_grows_while_read_is_read_to_its_end(tmp_path, monkeypatch):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(make_interaction(1)), encoding="utf-8")
    real_fstat = store_module.os.fstat

    class Smaller:  # what fstat said just before the file grew by all but 3 bytes
        def __init__(self, fd):
            self.st_size, self.st_mode = 3, real_fstat(fd).st_mode

    monkeypatch.setattr(store_module.os, "fstat", lambda fd: Smaller(fd) if fd > 2 else real_fstat(fd))
    assert [r.data for r in store_module.iter_file(path.as_posix())] == [make_interaction(1)]


def test_a_large_array_with_an_item_nested_too_deep_for_the_decoder_is_a_bad_record(tmp_path):
    path = tmp_path / "big.json"
    first = "[" + json.dumps(make_interaction(1)) + ", "
    path.write_text(first + "[" * 5000 + "]" * 5000 + "]", encoding="utf-8")
    read = list(iter_records(path, ReadSizes(whole_file_limit=10)))
    assert ids(read) == ["interaction_persona_001_0001"]
    reason = f"invalid JSON (depth limit exceeded; the item starts at byte {len(first)})"
    assert read[1:] == [BadRecord(path.as_posix(), "item 1", reason, kind=INVALID_JSON)]


def _read_in_time(path, seconds=10.0):
    """`iter_records(path)` run in a thread: a read that blocks (a FIFO opened for reading waits for a writer) is
    unblocked by opening the FIFOs for writing, and fails the test instead of hanging it."""
    import threading

    result: list = []

    def read():
        try:
            result.append(list(iter_records(path)))
        except BaseException as e:  # handed to the test's thread
            result.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        for fifo in (path if path.is_dir() else path.parent).rglob("fifo*"):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(seconds)
        pytest.fail("reading the store blocked")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_odd_files_are_bad_records_with_a_reason_and_never_block(tmp_path):
    root = write_files(tmp_path / "store", [make_interaction(1)])
    (root / "loop_a.json").symlink_to("loop_b.json")
    (root / "loop_b.json").symlink_to("loop_a.json")
    (root / "dangling.json").symlink_to("nowhere.json")
    for name in ("fifo.json", "fifo.jsonl", "fifo.json.gz"):
        os.mkfifo(root / name)
    (root / "device.json").symlink_to(os.devnull)
    (root / "fifo_notes.txt").write_text("not a store file name: never looked at", encoding="utf-8")
    read = _read_in_time(root)
    assert ids(read) == ["interaction_persona_001_0001"]
    store = root.as_posix()
    assert [r for r in read if isinstance(r, BadRecord)] == [
        BadRecord(
            f"{store}/dangling.json",
            "",
            "broken symbolic link (its target nowhere.json does not exist)",
            kind=UNREADABLE,
        ),
        BadRecord(f"{store}/device.json", "", "not a regular file (a character device)", kind=UNREADABLE),
        BadRecord(f"{store}/fifo.json", "", "not a regular file (a FIFO)", kind=UNREADABLE),
        BadRecord(f"{store}/fifo.json.gz", "", "not a regular file (a FIFO)", kind=UNREADABLE),
        BadRecord(f"{store}/fifo.jsonl", "", "not a regular file (a FIFO)", kind=UNREADABLE),
        BadRecord(f"{store}/loop_a.json", "", "symbolic link loop (it never reaches a file)", kind=UNREADABLE),
        BadRecord(f"{store}/loop_b.json", "", "symbolic link loop (it never reaches a file)", kind=UNREADABLE),
    ]


def test_a_store_given_as_an_odd_file_is_read_as_one_bad_record(tmp_path):
    (tmp_path / "loop.json").symlink_to("loop.json")
    os.mkfifo(tmp_path / "fifo.jsonl")
    loop, fifo = (tmp_path / "loop.json").as_posix(), (tmp_path / "fifo.jsonl").as_posix()
    assert _read_in_time(tmp_path / "loop.json") == [
        BadRecord(loop, "", "symbolic link loop (it never reaches a file)", kind=UNREADABLE)
    ]
    assert _read_in_time(tmp_path / "fifo.jsonl") == [
        BadRecord(fifo, "", "not a regular file (a FIFO)", kind=UNREADABLE)
    ]


def test_a_folder_reached_twice_through_links_is_walked_once(tmp_path):
    root = write_files(tmp_path / "store", [make_interaction(1)])
    write_files(root / "sub", [make_interaction(2)])
    outside = write_files(tmp_path / "elsewhere", [make_interaction(3)])
    (root / "sub" / "up").symlink_to("..")  # a cycle: store/sub/up is store
    (root / "self").symlink_to(".")
    (root / "b_link").symlink_to(outside)  # followed: a folder of the store may live elsewhere
    (root / "c_link").symlink_to(outside)  # the same folder again: walked under the first name only
    (outside / "back").symlink_to(root)
    found = discover_paths(root)
    assert list(found) == [
        f"{root.as_posix()}/b_link/interaction_persona_001_0003.json",
        f"{root.as_posix()}/interaction_persona_001_0001.json",
        f"{root.as_posix()}/sub/interaction_persona_001_0002.json",
    ]
    assert len(ids(iter_records(root))) == 3


def test_a_store_with_odd_files_has_a_fingerprint(tmp_path):
    root = write_files(tmp_path / "store", [make_interaction(1)])
    (root / "loop.json").symlink_to("loop.json")
    (root / "dangling.json").symlink_to("nowhere.json")
    os.mkfifo(root / "fifo.json")
    first = store_module.store_fingerprint(root)
    (root / "dangling.json").unlink()
    assert store_module.store_fingerprint(root) != first


@pytest.mark.parametrize(
    "name, content, where, reason",
    [
        (
            "a.jsonl",
            b'{"a": 1}\n\n{"b": [1, 2}\n',
            "line 3, column 12",
            "invalid JSON (unexpected character, expected ',' or ']')",
        ),
        ("b.jsonl", b'{"a": 1}\n{"b": 2\n', "line 2, column 8", "invalid JSON (unexpected end of data)"),
        ("c.jsonl", b'{"a": 1}\r\n{"b": 2\r\n', "line 2, column 8", "invalid JSON (unexpected end of data)"),
        (
            "d.jsonl",
            '{"caf\u00e9": x}\n'.encode(),
            "line 1, column 10",
            "invalid JSON (unexpected character, expected a JSON value)",
        ),
        ("e.jsonl", b'{"a": 1}\n{"b": "\xc3\xa9\xff"}\n', "line 2, column 9", "invalid UTF-8"),
        (
            "f.json",
            b'{\n  "a": 1,\n  "b": [1,, 2]\n}\n',
            "line 3, column 11",
            "invalid JSON (unexpected character, expected a JSON value)",
        ),
        ("g.json", b'{\n  "a": "\xe2\x82"\n}', "line 2, column 9", "invalid UTF-8"),
        ("h.json", b"  \n", "", "invalid JSON (the file is empty)"),
        ("i.json", b'{"a": 1} x', "line 1, column 10", "invalid JSON (unexpected content after document)"),
    ],
    ids=[
        "jsonl",
        "jsonl_end_of_line",
        "jsonl_crlf",
        "jsonl_non_ascii",
        "jsonl_utf8",
        "json",
        "json_utf8",
        "empty",
        "trailing",
    ],
)
def test_a_parse_error_names_one_position_line_and_column(tmp_path, name, content, where, reason):
    path = tmp_path / name
    path.write_bytes(content)
    bad = [r for r in iter_records(path) if isinstance(r, BadRecord)]
    assert bad == [BadRecord(path.as_posix(), where, reason, kind=INVALID_JSON)]
    assert bad[0].describe() == f"{path.as_posix()}{', ' + where if where else ''}: {reason}"


def test_invalid_utf8_in_a_streamed_array_names_its_byte_in_the_file(tmp_path):
    text = json.dumps([make_interaction(n) for n in range(3)]).encode()
    at = text.index(b"interaction_persona_001_0002")
    path = tmp_path / "big.json"
    path.write_bytes(text[:at] + b"\xff" + text[at + 1 :])
    for sizes in (ReadSizes(), ReadSizes(whole_file_limit=10, scan_block=64)):  # read whole, and a piece at a time
        bad = [r for r in iter_records(path, sizes) if isinstance(r, BadRecord)]
        assert bad == [BadRecord(path.as_posix(), "item 2", f"invalid UTF-8 at byte {at}", kind=INVALID_JSON)]


def test_read_sizes_are_checked_when_built():
    with pytest.raises(ValueError) as error:
        ReadSizes(scan_block=0)
    assert str(error.value) == "ReadSizes.scan_block must be an integer of at least 1, got 0"
    with pytest.raises(ValueError, match=r"^ReadSizes.piece_bytes must be an integer of at least 1, got True$"):
        ReadSizes(piece_bytes=True)
    assert ReadSizes(whole_file_limit=0).whole_file_limit == 0  # every .json file read a piece at a time
