"""A big record costs a bounded multiple of its size, in a whole export, measured in a process of its own.

A 20 MB user turn is in a sample's conversation and trajectory, in the JSON item and the JSONL line, in two Arrow
columns and in the leakage audit. Before, the audit normalised it whole (copies of it, a Python string per word)
and cut it into 3-grams in numpy arrays of 8 bytes a character, and the reader kept the line's bytes while the
record was used: an export took 1.2 GB more for it. Now the audit digests it a piece at a time and shingles a
bounded sample of it, the reader lets the line go, and a chunk holds the row once (not its JSON item and line).
"""

import subprocess
import sys
from collections import OrderedDict

import orjson
import pytest

from personagym_hf.testing.realistic import iter_realistic_interactions

TURN_BYTES = 20 << 20
# What the export of the store with the record may take more than without it. The issue's aim is 3x the record;
# what is left above that is Parquet's: when the last row groups are written, the turn is in three Arrow columns
# (`full`'s conversation and trajectory, `last_turn`'s prompt: 3x) and in the writer's page buffers (~2x).
# Measured 5.8x; 7.4x while glibc's malloc, whose thresholds rise as big blocks are freed, kept the record's freed
# blocks in the process (`memory.release_freed_memory` fixes them now).
BOUND = 6.5 * TURN_BYTES
# Without the Parquet folder: the record's text (1x), its line's bytes while it is parsed, and a leaf's JSON text
# at a time while the row is written; measured 3.1x. It was 4.1x with glibc's own thresholds, and 5.0x while the
# row's line was made whole to learn that the row is big (`chunks.conversation_chars` tells it from the
# conversation's length now).
JSON_BOUND = 3.5 * TURN_BYTES

PEAK = """
import sys
from personagym_hf.cli.main import main
code = main(["export", "--interactions", sys.argv[1], "--output", sys.argv[2], "-q", *sys.argv[3:]])
status = open("/proc/self/status").read()  # VmHWM: this process's peak, not the spawning process's
print(code, int(status.split("VmHWM:")[1].split()[0]) * 1024)
"""


def peak_of_export(store, out, *options: str) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(store), str(out), *options], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, peak = map(int, done.stdout.splitlines()[-1].split())
    assert code == 0
    return peak


def stores_with_and_without_a_big_record(tmp_path) -> dict:
    records = list(iter_realistic_interactions(300, personas=60, queries=20, seed=5))
    big = dict(records[7], interaction_id="interaction_big")
    big["messages"] = [dict(message) for message in big["messages"]]
    big["messages"][0]["content"] = ("paste " * (TURN_BYTES // 6))[:TURN_BYTES]  # the first user turn
    stores = {}
    for name, extra in (("without", []), ("with", [big])):
        folder = tmp_path / name
        folder.mkdir()
        with (folder / "interactions.jsonl").open("wb") as f:
            for record in records + extra:
                f.write(orjson.dumps(record) + b"\n")
        stores[name] = folder
    return stores


def test_a_20_mb_record_in_json_lines_costs_a_bounded_multiple_of_its_size(tmp_path):
    stores = stores_with_and_without_a_big_record(tmp_path)
    without = peak_of_export(stores["without"], tmp_path / "out-without")
    with_big = peak_of_export(stores["with"], tmp_path / "out-with")
    assert with_big - without <= BOUND, f"{(with_big - without) / TURN_BYTES:.1f}x the record"
    exported = (
        (tmp_path / "out-with" / "train_samples.jsonl").read_bytes()
        + (tmp_path / "out-with" / "val_samples.jsonl").read_bytes()
        + (tmp_path / "out-with" / "test_samples.jsonl").read_bytes()
    )
    assert exported.count(b"paste paste") >= 2  # in the conversation and the trajectory: it was exported


def test_a_big_record_costs_its_json_outputs_one_text_at_a_time(tmp_path):
    """Without the Parquet folder and the audit, what is left is the JSON and JSONL outputs: the record's row,
    written a leaf at a time, its line never whole (42 MB: the turn is in the conversation and in the trajectory):
    3.1x the record. Before, glibc kept the blocks the earlier stages had freed (4.1x), its line was made once to
    learn its size (5.0x), and before that copied with its newline, and its JSON item made whole too (6.8x)."""
    stores = stores_with_and_without_a_big_record(tmp_path)
    options = ("--no-hf-dataset", "--no-audit")
    without = peak_of_export(stores["without"], tmp_path / "out-without", *options)
    with_big = peak_of_export(stores["with"], tmp_path / "out-with", *options)
    assert with_big - without <= JSON_BOUND, f"{(with_big - without) / TURN_BYTES:.1f}x the record"


def test_a_chunk_holds_a_big_row_as_itself_and_writes_the_same_bytes(tmp_path):
    from personagym_hf.run.chunks import HELD_ROW_BYTES, ChunkResult, InMemory
    from personagym_hf.write.files import JsonArrayWriter, JsonlWriter

    rows = [{"sample_id": "a", "text": "small"}, {"sample_id": "b", "text": "x" * HELD_ROW_BYTES}, {"sample_id": "c"}]
    sink = InMemory(ChunkResult(0, None), ("train",))
    for row in rows:
        sink.row("train", row)
    assert [type(item) for item in sink.result.items["train"]] == [bytes, dict, bytes]
    assert sink.result.lines["train"][1] is rows[1]  # the row itself: its strings, not a copy of them
    written = {}
    for name, held in (("held", True), ("encoded", False)):
        json, jsonl = JsonArrayWriter(tmp_path / f"{name}.json"), JsonlWriter(tmp_path / f"{name}.jsonl")
        if held:
            json.add_items(sink.result.items["train"])
            jsonl.add_lines(sink.result.lines["train"])
        else:
            for row in rows:
                json.add(row)
                jsonl.add(row)
        written[name] = (json.commit().read_bytes(), jsonl.commit().read_bytes(), jsonl.fingerprint(), json.count)
    assert written["held"] == written["encoded"]


ODD_VALUES = [
    {},
    [],
    {"a": {}, "b": [], "c": [{}], "d": [[]], "e": {"f": {"g": []}}},
    {"text": 'quotes " and \\ and\nnewlines\tand \u00e9\u4e2d\U0001f600 and \x00', "n": -3, "x": 1.5, "big": 10**18},
    {"flags": [True, False, None], "floats": [0.1, 1e300, -0.0], "tuple": ("a", ("b",))},
    [1, [2, [3, {"k": "v"}]]],
    {"ordered": OrderedDict([("b", [1, {"c": OrderedDict(d=[2])}]), ("a", [])])},  # subclasses, nested
]


def test_a_row_written_in_pieces_is_the_same_bytes_as_one_dump():
    from personagym_hf.write.files import dumps_line, item_pieces, line_pieces, pretty_item

    rows = [dict(row) for row in iter_realistic_interactions(200, personas=40, queries=10, seed=3)] + ODD_VALUES
    for row in rows:
        assert b"".join(line_pieces(row)) == dumps_line(row) == orjson.dumps(row) + b"\n"
        assert b"".join(item_pieces(row)) == pretty_item(row)
    big = {"conversation": [{"role": "user", "content": "x" * (2 << 20)}], "id": "a"}
    assert max(len(piece) for piece in line_pieces(big)) == (2 << 20) + 2  # one leaf at a time: the text, quoted
    with pytest.raises(TypeError, match="Dict key must be str"):
        b"".join(line_pieces({1: "a"}))


def big_texts_alive(size: int) -> int:
    """The strings (or bytes) of at least `size` characters that some list or dict of this process holds."""
    import gc

    found = 0
    for holder in gc.get_objects():
        if isinstance(holder, (list, dict)):
            values = holder.values() if isinstance(holder, dict) else holder
            found += sum(1 for value in values if isinstance(value, (str, bytes)) and len(value) >= size)
    return found


def test_the_last_chunk_lets_its_big_row_go_before_the_export_ends(tmp_path, monkeypatch):
    """A chunk's rows and Arrow batches are let go once the exporter has handed them to its files and writers: the
    last chunk's big row (held as itself, see `chunks.InMemory`) was alive while the shards' last row groups were
    written, its text 1x the record more at the export's peak."""
    from personagym_hf.cli.main import main
    from personagym_hf.run.chunks import HELD_ROW_BYTES
    from personagym_hf.write.exporter import Exporter

    turn = HELD_ROW_BYTES * 2
    records = list(iter_realistic_interactions(30, personas=6, queries=3, seed=5))
    records[3]["messages"] = [dict(message) for message in records[3]["messages"]]
    records[3]["messages"][0]["content"] = ("paste " * turn)[:turn]  # a user turn: in two columns of `full`
    store = tmp_path / "store"
    store.mkdir()
    (store / "interactions.jsonl").write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    alive_at_finish = []
    finish = Exporter.finish

    def counted_finish(self, **kwargs):
        alive_at_finish.append(big_texts_alive(turn))
        return finish(self, **kwargs)

    monkeypatch.setattr(Exporter, "finish", counted_finish)
    assert main(["export", "--interactions", str(store), "--output", str(tmp_path / "out"), "-q"]) == 0
    assert alive_at_finish == [0]
    out = tmp_path / "out"
    exported = b"".join((out / f"{split}_samples.jsonl").read_bytes() for split in ("train", "val", "test"))
    assert exported.count(records[3]["messages"][0]["content"].encode()) == 2  # in the conversation and trajectory


def test_a_row_whose_conversation_is_over_the_limit_is_held_without_being_dumped(monkeypatch):
    """The conversation's characters are a lower bound of the line's bytes: such a row is held as itself without its
    line being made; a row big elsewhere is still found by its line's length."""
    from personagym_hf.run import chunks
    from personagym_hf.run.chunks import HELD_ROW_BYTES, ChunkResult, InMemory, conversation_chars

    conversation = [{"role": "user", "content": "é" * (HELD_ROW_BYTES - 3)}, {"role": "assistant", "content": "abc"}]
    odd = [{"role": "user", "content": None}, "not a message", {"role": "user"}, {"role": "user", "content": "ab"}]
    assert conversation_chars({"full_conversation": conversation}) == HELD_ROW_BYTES
    assert conversation_chars({"full_conversation": odd}) == 2
    assert conversation_chars({"full_conversation": "text"}) == conversation_chars({}) == 0

    dumped, dumps_line_within = [], chunks.dumps_line_within

    def recorded(row, limit):
        dumped.append(row["sample_id"])
        return dumps_line_within(row, limit)

    monkeypatch.setattr(chunks, "dumps_line_within", recorded)
    rows = [
        {"sample_id": "big conversation", "full_conversation": conversation},
        {"sample_id": "big elsewhere", "full_conversation": conversation[1:], "text": "x" * HELD_ROW_BYTES},
        {"sample_id": "small", "full_conversation": conversation[1:]},
    ]
    sink = InMemory(ChunkResult(0, None), ("train",))
    for row in rows:
        sink.row("train", row)
    assert dumped == ["big elsewhere", "small"]
    assert [type(line) for line in sink.result.lines["train"]] == [dict, dict, bytes]
    assert sink.result.lines["train"][0] is rows[0]
