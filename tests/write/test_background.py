"""write.background: the one thread an in-process export writes its Parquet row groups and its JSON files on."""

import errno
import json
import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personagym_hf.config import RunOptions
from personagym_hf.run.runner import InProcess
from personagym_hf.schema import arrow_schema
from personagym_hf.write.background import Background
from personagym_hf.write.parquet import ParquetSplitWriter

SPECS = {"sample_id": "string", "num_turns": "int32"}


class Recording(Background):
    """A Background that notes, for each write, its name, the thread it ran on and the bytes it said it holds."""

    def __init__(self):
        super().__init__()
        self.ran: list[tuple[str, str]] = []
        self.sizes: list[int] = []

    def submit(self, write, *args, nbytes=0):
        def noted(*args):
            self.ran.append((write.__name__, threading.current_thread().name))
            return write(*args)

        self.sizes.append(nbytes)
        super().submit(noted, *args, nbytes=nbytes)


def table(first: int, rows: int) -> pa.Table:
    return pa.table(
        {
            "sample_id": pa.array([f"s{i:05d}" for i in range(first, first + rows)]),
            "num_turns": pa.array([i % 7 for i in range(first, first + rows)], pa.int32()),
        }
    )


def write_split(folder, background=None):
    writer = ParquetSplitWriter(folder, "train", SPECS, max_shard_bytes=2000, row_group_rows=50, background=background)
    for first in range(0, 1050, 70):  # 15 batches of 70 rows: they do not line up with the row groups of 50
        writer.add_table(table(first, 70))
    return writer.commit()


def test_writes_run_in_order_on_one_other_thread():
    done = []
    with Background(max_bytes=2) as background:
        for number in range(20):
            background.submit(lambda n: done.append((n, threading.current_thread().name)), number, nbytes=1)
        background.wait()
        assert [n for n, _thread in done] == list(range(20))
    assert {thread for _n, thread in done} == {"personagym-hf-writes"}


def test_a_split_written_on_the_thread_is_the_same_bytes_and_its_row_groups_ran_there(tmp_path):
    inline = write_split(tmp_path / "inline")
    background = Recording()
    with background:
        behind = write_split(tmp_path / "behind", background)
    assert len(inline) == len(behind) > 1  # several shards, each closed on the thread too
    assert [path.read_bytes() for path in behind] == [path.read_bytes() for path in inline]
    assert {name for name, _thread in background.ran} == {"write", "close"}
    assert sum(name == "write" for name, _thread in background.ran) == 21  # 1050 rows / 50
    assert {thread for _name, thread in background.ran} == {"personagym-hf-writes"}
    written = [size for (name, _thread), size in zip(background.ran, background.sizes) if name == "write"]
    assert written == [table(0, 50).nbytes] * 21  # each row group says what it holds (its Arrow bytes)


def test_a_write_waits_while_those_waiting_hold_more_than_the_bound():
    release, first_done = threading.Event(), []

    def first():
        release.wait(10)
        first_done.append(True)

    with Background(max_bytes=100) as background:
        background.submit(first, nbytes=80)
        threading.Timer(0.2, release.set).start()
        background.submit(lambda: None, nbytes=80)  # 160 > 100: returns once the first write is done
        assert first_done == [True]
        background.submit(lambda: None, nbytes=10_000)  # alone in the queue, a write of any size goes
        background.wait()


def test_the_first_failed_write_is_raised_to_the_caller_and_the_later_ones_do_not_run():
    ran = []

    def fail():
        raise OSError(28, "No space left on device")

    background = Background()
    background.submit(ran.append, 1)
    background.submit(fail)
    background.submit(ran.append, 2)
    with pytest.raises(OSError, match="No space left on device") as caught:
        background.wait()
    assert caught.value.errno == 28
    background.close()  # raised once: closing after it is quiet
    assert ran == [1]


def test_a_failure_is_raised_at_the_next_submit(tmp_path):
    background = Background(max_bytes=1)
    background.submit(lambda: (_ for _ in ()).throw(ValueError("row group refused")), nbytes=1)
    with pytest.raises(ValueError, match="row group refused"):
        for _ in range(50):  # the failure is in before this loop ends: every submit waits for the one before
            background.submit(lambda: None, nbytes=1)
    background.close()


def test_an_aborted_writer_waits_for_its_writes_then_removes_its_files(tmp_path):
    background = Background()
    writer = ParquetSplitWriter(tmp_path, "train", SPECS, row_group_rows=50, background=background)
    writer.add_table(table(0, 500))
    writer.abort()
    background.close()
    assert list(tmp_path.iterdir()) == []


def test_the_in_process_runner_writes_on_its_thread_and_ends_it_on_leaving(tmp_path):
    with InProcess(RunOptions(row_group_rows=50)) as runner:
        writer = runner.split_writer(tmp_path, "train", "full", SPECS, tmp_path / "spill")
        assert writer.background is runner.background
        writer.add_table(table(0, 120))
        (path,) = writer.commit()
        thread = runner.background._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive() and runner.background._thread is None
    assert pq.read_table(path).num_rows == 120


@pytest.fixture
def tiny_disk(tmp_path):
    from disks import mounted_tmpfs

    yield from mounted_tmpfs(tmp_path / "disk", "256k")


def test_a_full_disk_under_the_thread_is_raised_to_the_writer_and_its_files_go(tiny_disk):
    """The thread's own failure, on a real full disk: the row groups it writes do not fit. The caller gets the
    disk's error (what `run.job` turns into its one line), then the abort leaves nothing behind."""
    background = Recording()
    writer = ParquetSplitWriter(tiny_disk, "train", SPECS, row_group_rows=50, background=background)
    noise = pa.table({"sample_id": pa.array([os.urandom(64).hex() for _ in range(500)]), "num_turns": [1] * 500})
    with pytest.raises(OSError) as caught:
        for _ in range(100):  # 6.4 MB of incompressible ids for a 256 KB disk
            writer.add_table(noise.cast(arrow_schema(SPECS)))
        writer.commit()
    assert caught.value.errno == errno.ENOSPC
    assert background._failed  # the failure was the thread's, raised to the caller
    writer.abort()
    background.close(raise_error=False)
    assert list(tiny_disk.iterdir()) == []


def split_files(folder, background=None):
    from personagym_hf.write.exporter import SplitFiles
    from personagym_hf.write.files import OutputSet

    return SplitFiles(folder, OutputSet(), ("train", "test"), None, background)


def encoded(first: int, count: int) -> tuple[list[bytes], list[bytes]]:
    from personagym_hf.write.files import dumps_line, pretty_item

    rows = [{"sample_id": f"s{n}", "text": "x" * (n % 5000), "n": n} for n in range(first, first + count)]
    return [pretty_item(row) for row in rows], [dumps_line(row) for row in rows]


def fill(files) -> None:
    """Batches to both splits, a big row (held as a dict, written a piece at a time) among them, then carried-over
    rows (`add_row`), as an in-process export hands them over."""
    for first in range(0, 1200, 300):
        files.add_items("train", *encoded(first, 300))
        files.add_items("test", *encoded(first + 5000, 7))
    big = {"sample_id": "big", "text": "y" * 300_000}
    items, lines = encoded(9000, 3)
    files.add_items("train", [items[0], big, items[1]], [lines[0], big, lines[1]])
    files.add_items("train", *encoded(10_000, 2))
    files.add_row({"sample_id": "carried", "text": "z"}, "test")
    files.wait()
    for writer in [*files.json.values(), *files.jsonl.values()]:
        writer.commit()


def test_the_json_files_written_on_the_thread_are_the_same_bytes_and_were_written_there(tmp_path):
    inline = split_files(tmp_path / "inline")
    fill(inline)
    background = Recording()
    with background:
        behind = split_files(tmp_path / "behind", background)
        fill(behind)
    names = sorted(path.name for path in (tmp_path / "inline").iterdir())
    assert names == ["test_samples.json", "test_samples.jsonl", "train_samples.json", "train_samples.jsonl"]
    for name in names:
        assert (tmp_path / "behind" / name).read_bytes() == (tmp_path / "inline" / name).read_bytes()
    assert json.loads((tmp_path / "behind" / "train_samples.json").read_bytes())[1201]["sample_id"] == "big"
    for split in ("train", "test"):
        assert behind.jsonl[split].fingerprint() == inline.jsonl[split].fingerprint()
        assert behind.json[split].count == inline.json[split].count
    # Each batch of encoded rows: its JSON items, then its JSONL lines, on the writes thread; the batch with the big
    # row was written here, after the thread had written those before it.
    assert background.ran == [("write_parts", "personagym-hf-writes")] * (2 * (8 + 1 + 1))
    assert background.sizes[:2] == [sum(map(len, part)) for part in encoded(0, 300)]


def test_write_parts_writes_every_part_through_short_writes_and_more_parts_than_one_call_takes(tmp_path, monkeypatch):
    from personagym_hf.write import files

    parts = [bytes([65 + n % 26]) * (n % 7) for n in range(3000)]  # empty parts too
    calls = []
    real_writev = os.writev

    def short_writev(fd, buffers):  # as a signal or a filling disk makes it: at most 10 bytes a call
        buffers = list(buffers)
        assert len(buffers) <= 100
        calls.append(len(buffers))
        taken, left = [], 10
        for buffer in buffers:
            piece = bytes(buffer)[:left]
            taken.append(piece)
            left -= len(piece)
        return real_writev(fd, taken)

    monkeypatch.setattr(files.os, "writev", short_writev)
    out = files.AtomicFile(tmp_path / "parts.bin")
    out.write(b"first ")  # buffered: written before the parts
    out.write_parts(list(parts), per_call=100)
    out.write(b" last")
    assert out.commit().read_bytes() == b"first " + b"".join(parts) + b" last"
    assert len(calls) == -(-sum(map(len, parts)) // 10)  # 10 bytes a call, every call short


def test_write_parts_stops_when_a_write_takes_nothing(tmp_path, monkeypatch):
    from personagym_hf.write import files

    monkeypatch.setattr(files.os, "writev", lambda fd, buffers: 0)
    out = files.AtomicFile(tmp_path / "parts.bin")
    with pytest.raises(OSError, match="the file took no byte of a write") as caught:
        out.write_parts([b"", b"abc"])
    assert caught.value.errno == errno.EIO and caught.value.filename == str(out.temp)
    out.abort()


def test_an_in_process_export_writes_its_json_files_on_the_thread(tmp_path, monkeypatch):
    from exporting import export_store

    from personagym_hf import TrainingDataCollector
    from personagym_hf.config import parse_config
    from personagym_hf.run import runner
    from personagym_hf.testing.synth import write_store

    store = write_store(tmp_path / "store", count=40, personas=10, seed=3, reply_chars=40)
    made: list[Recording] = []
    monkeypatch.setattr(runner, "Background", lambda: made.append(Recording()) or made[-1])
    cfg = parse_config({"training_data": {"split_by": "sample"}})
    done = export_store(store, tmp_path / "out", cfg, TrainingDataCollector().interaction_to_training_sample)
    (background,) = made
    writes = [name for name, thread in background.ran if thread == "personagym-hf-writes"]
    assert len(writes) == len(background.ran)
    assert writes.count("write_parts") == 2 * 3  # one batch a split (40 samples): its JSON, then its JSONL
    assert sum(len(json.loads(path.read_bytes())) for path in done.result.json_files.values()) == 40


def test_a_row_group_of_pieces_is_combined_on_the_thread_and_is_the_bytes_of_one_table(tmp_path, monkeypatch):
    """The row groups that take rows from several batches reach the shard's `write` in pieces, on the thread, which
    combines them (the copy was the caller's): the same bytes and `num_bytes` as the rows written as one table. The
    texts are long enough for a row group to take several data pages, whose cuts follow the arrays' chunks: written
    in pieces, uncombined, the shard's bytes differ."""
    import random

    from personagym_hf.write import parquet

    specs = {"sample_id": "string", "text": "string"}
    letters = random.Random(0)
    texts = ["".join(letters.choice("abcdefghij ") for _ in range(3000)) for _ in range(1050)]
    rows = pa.table({"sample_id": [f"s{i:05d}" for i in range(1050)], "text": texts})
    seen = []
    write = parquet.ShardFile.write

    def noted(self, group):
        seen.append((group.column("text").num_chunks, threading.current_thread().name))
        return write(self, group)

    monkeypatch.setattr(parquet.ShardFile, "write", noted)
    whole = ParquetSplitWriter(tmp_path / "whole", "train", specs, row_group_rows=500)
    whole.add_table(rows)
    one_table = whole.commit()
    assert seen == [(1, "MainThread")] * 3
    seen.clear()
    with Background() as background:
        writer = ParquetSplitWriter(tmp_path / "pieces", "train", specs, row_group_rows=500, background=background)
        for first in range(0, 1050, 70):  # batches of 70 rows: the row groups of 500 take rows from 8, 8 and 1
            writer.add_table(rows.slice(first, 70))
        pieces = writer.commit()
    assert seen == [(8, "personagym-hf-writes"), (8, "personagym-hf-writes"), (1, "personagym-hf-writes")]
    assert [path.read_bytes() for path in pieces] == [path.read_bytes() for path in one_table]
    assert writer.num_bytes == whole.num_bytes == rows.nbytes
