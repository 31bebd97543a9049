"""Parquet shards: each row's size, the shard plan made from the sizes, and shards written by the workers
(`shardwork.py`) with the bytes of a one-process export."""

import errno
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_interaction, write_files
from exporting import export_store, snapshot
from holds import held, hold_env

from personagym_hf import TrainingDataCollector
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.schema import arrow_schema
from personagym_hf.testing.synth import write_store
from personagym_hf.transform.encode import Encoder
from personagym_hf.write import parquet as shards
from personagym_hf.write.folder import OutputError
from personagym_hf.write.parquet import ParquetSplitWriter, ShardPiece, ShardPlan, ShardSpec, row_sizes, write_shard
from personagym_hf.write.planned_shards import PlannedSplitWriter

CONVERT = TrainingDataCollector().interaction_to_training_sample
# Small chunks, row groups and shards: a 90-interaction store gives 9 chunks and several shards per split.
SMALL = RunOptions(chunk_files=10, row_group_rows=4, max_shard_bytes=10_000)


@pytest.fixture
def store(tmp_path) -> Path:
    records = [make_interaction(n, persona=f"persona_{n % 30:03d}") for n in range(90)]
    return write_files(tmp_path / "store", records)


def test_row_sizes_count_each_value_and_offset():
    table = pa.table(
        {
            "text": pa.array(["ab", None, ""]),
            "number": pa.array([1, 2, 3], pa.int64()),
            "turns": pa.array(
                [[{"role": "user", "content": "hi"}], [], None],
                pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
            ),
            "json": pa.array(['{"a": 1}', "{}", "null"], pa.json_(pa.string())),
        }
    )
    # text: bytes + 4 (its offset); number: 8; turns: 4 + per element role (4 + 4) and content (2 + 4); json: as text
    assert row_sizes(table).tolist() == [(2 + 4) + 8 + (4 + 8 + 6) + (8 + 4), 4 + 8 + 4 + (2 + 4), 4 + 8 + 4 + (4 + 4)]


def test_row_sizes_do_not_depend_on_batching_or_on_a_parquet_round_trip(tmp_path):
    rows = [{"text": "x" * n, "items": [str(i) for i in range(n % 4)]} for n in range(50)]
    whole = pa.Table.from_pylist(rows)
    pieces = pa.concat_tables([whole.slice(0, 7), whole.slice(7, 30), whole.slice(37)])
    pq.write_table(whole, tmp_path / "t.parquet", row_group_size=9)
    back = pq.read_table(tmp_path / "t.parquet")
    assert row_sizes(pieces).tolist() == row_sizes(whole).tolist() == row_sizes(back).tolist()
    assert row_sizes(whole.slice(20, 5)).tolist() == row_sizes(whole).tolist()[20:25]
    assert row_sizes(whole).sum() == whole.nbytes  # no nulls: no bitmaps to leave out


def test_the_plan_closes_a_shard_after_the_row_group_that_reaches_the_limit():
    plan = ShardPlan(max_shard_bytes=100, row_group_rows=3)
    assert plan.add(np.array([10, 10])) == []  # a row group not yet full
    assert plan.add(np.array([10, 40])) == []  # the first group (30) is full: the shard is under 100
    assert plan.add(np.array([40, 40, 5])) == [(0, 6)]  # the second (120) takes it to 150: the shard ends there
    assert plan.add(np.array([500])) == []  # 505, but the group is not full yet
    assert plan.add(np.array([1, 1, 1])) == [(6, 9)]
    assert plan.finish() == [(9, 11)]  # the last group, shorter
    assert plan.finish() == []


def test_the_plan_is_the_same_for_any_cut_of_the_sizes():
    sizes = np.random.default_rng(1).integers(1, 500, 2000)
    whole = ShardPlan(9_000, 7)
    expected = whole.add(sizes) + whole.finish()
    for cuts in ([1000], [3, 4, 5, 1999], list(range(0, 2000, 13))):
        plan = ShardPlan(9_000, 7)
        pieces = np.split(sizes, cuts)
        assert [shard for piece in pieces for shard in plan.add(piece)] + plan.finish() == expected
    assert len(expected) > 50 and all(stop % 7 == 0 for _start, stop in expected[:-1])


def test_workers_write_the_shards_with_the_bytes_of_one_process(store, tmp_path, monkeypatch):
    """The parent opens no Parquet writer: the workers write every shard, and the files are those of one process."""
    one = export_store(store, tmp_path / "one", parse_config({}), CONVERT, options=SMALL)
    parent, writers = os.getpid(), tmp_path / "writers"
    opened = pq.ParquetWriter

    def in_a_worker_only(*args, **kwargs):
        if os.getpid() == parent:
            raise AssertionError("the parent process wrote Parquet")
        with writers.open("a") as log:
            log.write(f"{os.getpid()}\n")
        return opened(*args, **kwargs)

    monkeypatch.setattr(shards.pq, "ParquetWriter", in_a_worker_only)  # inherited by the forked workers
    two = export_store(store, tmp_path / "two", parse_config({}), CONVERT, options=replace(SMALL, num_proc=2))
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")
    full = sorted(p.name for p in (tmp_path / "two/hf_dataset/data/full").iterdir())
    assert len([name for name in full if name.startswith("train-")]) > 3, full
    shard_files = list((tmp_path / "two/hf_dataset/data").rglob("*.parquet"))
    assert len(writers.read_text().splitlines()) == len(shard_files)  # one writer per shard, none in the parent
    assert len(set(writers.read_text().split())) == 2  # both workers wrote shards
    assert two.result.statistics == one.result.statistics
    assert not list((tmp_path / "two").rglob("*.arrow"))


class WritesAtOnce:
    """A shard runner (`planned_shards.ShardRunner`) that writes each shard here, as it is handed out."""

    def __init__(self, specs: dict):
        self.specs = specs

    def submit_shard(self, spec):
        return write_shard(spec, self.specs[spec.config])

    @staticmethod
    def ready(handle) -> bool:
        return True

    @staticmethod
    def result(handle, what: str):
        return handle


def test_a_chunk_file_is_removed_once_no_shard_needs_it_and_the_shards_are_those_of_one_writer(tmp_path):
    """The staging folder holds only the Arrow files of a split's open shard (and of shards being written)."""
    specs = Encoder(parse_config({}), False, True).specs["minimal"]
    rows = [
        {"sample_id": f"s{i}", "initial_query": "q" * (i % 7), "prompt_trajectory": ["a"] * (i % 3), "num_turns": i}
        for i in range(40)
    ]
    table = pa.Table.from_pylist(rows, schema=arrow_schema(specs))
    planned = PlannedSplitWriter(
        tmp_path / "planned", "train", "minimal", specs, WritesAtOnce({"minimal": specs}), tmp_path / "spill", 200, 4
    )
    files = []
    for start in range(0, 40, 5):
        path = tmp_path / f"chunk{start:02d}.arrow"
        with pa.ipc.new_file(path, table.schema) as arrow:
            arrow.write_table(table.slice(start, 5))
        files.append((path, start, start + 5))
        planned.add_file(path, row_sizes(table.slice(start, 5)))
        open_shard = [path for path, first, stop in files if stop > planned.plan.start]
        assert [path for path, _first, _stop in files if path.exists()] == open_shard
    assert planned.shards > 3 and len(open_shard) < len(files)
    planned.commit()
    assert not [path for path, _first, _stop in files if path.exists()]

    one = ParquetSplitWriter(tmp_path / "one", "train", specs, 200, 4)
    for start in range(0, 40, 5):
        one.add_table(table.slice(start, 5))
    one.commit()
    assert snapshot(tmp_path / "planned") == snapshot(tmp_path / "one")
    assert len(snapshot(tmp_path / "one")) == planned.shards
    assert pa.concat_tables(pq.read_table(path) for path in sorted((tmp_path / "one").iterdir())).to_pylist() == rows


def test_a_split_without_rows_gets_no_shard_and_loses_the_earlier_ones(tmp_path):
    specs = Encoder(parse_config({}), False, True).specs["minimal"]
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "test-00000-of-00001.parquet").write_bytes(b"an earlier export's shard")
    planned = PlannedSplitWriter(folder, "test", "minimal", specs, WritesAtOnce({"minimal": specs}), tmp_path / "t")
    assert planned.commit() == []
    assert (planned.num_examples, planned.num_bytes, list(folder.iterdir())) == (0, 0, [])


def test_an_append_with_workers_gives_the_bytes_of_one_process(store, tmp_path):
    """The earlier export's rows (tables in the parent) reach the workers through an Arrow file of their own."""
    first = write_files(tmp_path / "first", [make_interaction(n, persona=f"persona_{n % 30:03d}") for n in range(40)])
    for name, num_proc in (("one", 1), ("two", 2)):
        options = replace(SMALL, num_proc=num_proc)
        export_store(first, tmp_path / name, parse_config({}), CONVERT, options=options)
        export_store(store, tmp_path / name, parse_config({}), CONVERT, append=True, options=options)
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "two/hf_dataset/data/full").iterdir())
    assert rows == 90


def test_a_full_disk_in_a_worker_writing_a_shard_is_one_line_and_the_earlier_export_stays(
    store, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    export_store(store, out, parse_config({}), CONVERT, options=SMALL)
    before = snapshot(out)
    parent = os.getpid()

    def full(self, group):
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(shards.ShardFile, "write", full)
    with pytest.raises(OutputError) as raised:
        export_store(store, out, parse_config({}), CONVERT, options=replace(SMALL, num_proc=2))
    assert str(raised.value).startswith(f"no space left on device writing {out} (needed ~")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]


def test_a_worker_killed_mid_run_is_one_line_not_a_hang(store, tmp_path):
    """In a process of its own, bounded: `multiprocessing.Pool` waited for a killed worker's task forever."""
    out = tmp_path / "out"
    export_store(store, out, parse_config({}), CONVERT, options=SMALL)
    before = snapshot(out)
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from ray_support import Dies
from personagym_hf.run.local import WorkerDied
from personagym_hf.config import RunOptions, parse_config
from exporting import export_store
options = RunOptions(chunk_files=10, row_group_rows=4, max_shard_bytes=10_000, num_proc=2)
try:
    dies = Dies("interaction_persona_025_0055")
    export_store({str(store)!r}, {str(out)!r}, parse_config({{}}), dies, options=options)
except WorkerDied as error:
    print(error)
    sys.exit(3)
"""
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        printed, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the export and its workers
            process.wait()
    assert process.returncode == 3
    assert printed == (
        "a worker process died (killed, or out of memory); the earlier export is unchanged: rerun, with fewer "
        "--num-proc if memory ran out\n"
    )
    assert snapshot(out) == before


def test_a_sigterm_while_the_workers_fork_is_not_lost(tmp_path):
    """A signal handler that raises inside one of Python's at-fork handlers is swallowed ("Exception ignored"): the
    export holds SIGTERM off while it forks its workers, and ends with 143 instead of running to the end."""
    store = write_store(tmp_path / "store", count=1100, personas=40, seed=5, reply_chars=20)  # 2 chunks: a pool
    out = tmp_path / "out"
    script = f"""
import os, signal, sys
from personagym_hf.cli.main import main
sent = []
def before_fork():
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(before=before_fork)
sys.exit(main(["export", "--interactions", {str(store)!r}, "--output", {str(out)!r}, "-q", "--num-proc", "2"]))
"""
    # A worker left running would hold the pipes open: `run` would then wait for it until the timeout.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (143, "personagym-hf: terminated; earlier outputs are unchanged\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_shard_task_that_outlives_its_export_makes_no_folder_again(tmp_path):
    """A Ray task cancelled with its export may still run after the staging folder is removed: it fails instead."""
    specs = Encoder(parse_config({}), False, True).specs["minimal"]
    table = pa.Table.from_pylist(
        [{"sample_id": "s", "initial_query": "q", "prompt_trajectory": [], "num_turns": 1}],
        schema=arrow_schema(specs),
    )
    rows = tmp_path / "rows.arrow"
    with pa.ipc.new_file(rows, table.schema) as arrow:
        arrow.write_table(table)
    gone = tmp_path / ".out.staging-1" / "hf_dataset" / "data" / "minimal"
    spec = ShardSpec("minimal", "train", 0, str(gone), (ShardPiece(str(rows), 0, 1),), 4)
    with pytest.raises(FileNotFoundError):
        write_shard(spec, specs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.arrow"]
    gone.parent.mkdir(parents=True)
    assert write_shard(spec, specs).rows == 1


def empty_job():
    """A job of no file, for a runner's pool whose tasks the tests submit themselves."""
    import personagym_hf.run.chunks as chunks

    return chunks.ChunkJob((), Encoder(parse_config({}), False, True), CONVERT)


def test_a_signal_handler_set_outside_python_is_left_alone_while_the_pool_forks(monkeypatch):
    """`signal.getsignal` gives None for a handler that C code installed: it could not be put back, so it is left."""
    from personagym_hf.run.local import LocalRunner

    real, real_signal = signal.getsignal, signal.signal

    def as_if_set_in_c(number, handler):  # what Python says of a handler it did not install
        previous = real_signal(number, handler)
        return None if number == signal.SIGTERM else previous

    monkeypatch.setattr(signal, "getsignal", lambda number: None if number == signal.SIGTERM else real(number))
    monkeypatch.setattr(signal, "signal", as_if_set_in_c)
    before = real(signal.SIGTERM), real(signal.SIGINT)
    job = empty_job()
    with LocalRunner(RunOptions(num_proc=2)) as runner:
        runner._start(job)
        assert runner._submit(len, "four").result(timeout=60) == 4
    assert (real(signal.SIGTERM), real(signal.SIGINT)) == before


def test_a_task_submitted_after_a_worker_died_is_one_line_too(tmp_path):
    """Under load the parent took a chunk's result, then submitted the next chunk to a pool a worker had just broken:
    BrokenProcessPool came out of the submit as a traceback, where a result says WorkerDied (found by running this
    file's kill test three times with both cores busy)."""
    from personagym_hf.run.local import LocalRunner, WorkerDied

    job = empty_job()
    with LocalRunner(RunOptions(num_proc=2)) as runner:
        runner._start(job)
        with pytest.raises(WorkerDied):
            runner.result(runner._submit(os._exit, 1), "the task that dies")
        with pytest.raises(WorkerDied) as raised:
            runner._submit(len, "four")  # the pool is broken now: it takes no task
    assert str(raised.value) == (
        "a worker process died (killed, or out of memory); the earlier export is unchanged: rerun, with fewer "
        "--num-proc if memory ran out"
    )


def test_a_ctrl_c_another_thread_takes_stops_the_wait_for_a_worker():
    """The kernel gives a process's signal to any of its threads that does not block it; when one of the pool's
    threads took the Ctrl-C, the main thread, waiting for a worker's result without a timeout, did not see it before
    that result came: an export whose workers were busy went on until they were done. Here the signal goes to
    another thread on purpose, while the main thread waits for a task of 30 s."""
    import threading
    import time

    from personagym_hf.run.local import LocalRunner

    job = empty_job()

    def interrupt_from_this_thread() -> None:
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not to the main one

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see DUMPABLE)
    try:
        with pytest.raises(KeyboardInterrupt), LocalRunner(RunOptions(num_proc=2)) as runner:
            runner._start(job)
            slow = runner._submit(time.sleep, 30)
            threading.Thread(target=interrupt_from_this_thread).start()
            started = time.monotonic()
            try:
                runner.result(slow, "a task of 30 s")
            finally:
                waited = time.monotonic() - started
    finally:
        signal.signal(signal.SIGINT, previous)
    assert waited < 5


def _ignore_sigterm(_argument) -> int:
    """A task that makes its worker ignore SIGTERM, as one forked while `LocalRunner._submit` held the signals does
    until its initializer runs."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getpid()


def test_workers_stopped_on_an_error_are_gone_even_one_that_took_sigterm():
    """Leaving the runner on an error stops its workers: one that does not end on SIGTERM is killed (it outlived the
    run before, held 10 s of the exit first), and this process's end of their result pipe is closed (a worker
    stopped while it sent a result leaves half a message there, which the pool's thread would wait on forever). The
    pipe used to be looked up after `shutdown(wait=False)`, which drops the pool's reference to it: never closed."""
    import time

    from personagym_hf.run.local import STOP_GRACE, LocalRunner

    job = empty_job()
    runner = LocalRunner(RunOptions(num_proc=2))
    pids: list[int] = []
    try:
        with pytest.raises(KeyboardInterrupt), runner:
            runner._start(job)
            deaf = runner._submit(_ignore_sigterm, None).result(timeout=60)
            results, pids = runner.pool._result_queue, [process.pid for process in runner.pool._processes.values()]
            started = time.monotonic()
            raise KeyboardInterrupt
        stopping = time.monotonic() - started
        assert deaf in pids and _running(pids) == []
        assert stopping < 2 * STOP_GRACE + 1
        assert results._writer.closed
    finally:
        for pid in _running(pids):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (a zombie waiting for its new parent to reap it does not)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


# `python -m personagym_hf`, whose processes print every thread's stack on SIGUSR1 (the workers inherit the handler):
# what a test shows of an export that hangs. With Ctrl-C raising KeyboardInterrupt, as in a terminal: run from a
# shell's background job (`.ci/run &`), the tests and this export would inherit SIGINT ignored, and Python leaves an
# ignored SIGINT ignored.
DUMPABLE = (
    "import faulthandler, runpy, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('personagym_hf', run_name='__main__', alter_sys=True)"
)


def held_export(tmp_path: Path, **popen) -> tuple[subprocess.Popen, Path]:
    """An export with two workers, each held at the start of its first chunk (`write.folder.hold`)."""
    store = write_store(tmp_path / "store", count=3000, personas=100, seed=7, reply_chars=200)  # 3 chunks
    hold = tmp_path / "hold"
    command = [sys.executable, "-c", DUMPABLE, "export", "--interactions", str(store), "--output"]
    export = subprocess.Popen([*command, str(tmp_path / "out"), "-q", "--num-proc", "2"], env=hold_env(hold), **popen)
    return export, hold


def ended(export: subprocess.Popen, timeout: float) -> int:
    """The exit code of `export` (its own process group), or a failure with the stacks of its processes' threads
    when it has not ended within `timeout`."""
    import contextlib
    import time

    try:
        return export.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [export.pid, *_children(export.pid)]:  # one at a time: their stacks would interleave
            with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                os.kill(pid, signal.SIGUSR1)
            time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(export.pid, signal.SIGKILL)
        stacks = export.stderr.read() if export.stderr is not None else "(stderr not captured)"
        pytest.fail(f"the export had not ended {timeout:.0f} s later; its processes' threads:\n{stacks}")


def test_the_workers_die_with_a_parent_killed_with_sigkill(tmp_path):
    """A `concurrent.futures` worker holds its own task queue open, so it would wait for a next task forever."""
    import time

    export, hold = held_export(tmp_path, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        workers = held(hold, 2, export)
        assert sorted(workers) == sorted(_children(export.pid))  # the hold is in the workers
        export.kill()
        export.wait(timeout=60)
        deadline = time.monotonic() + 10
        while _running(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(workers) == []
    finally:
        if export.poll() is None:
            export.kill()
        for pid in _running(workers):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_on_an_export_with_workers_is_one_line(tmp_path):
    """A terminal's Ctrl-C goes to every process of the export: the workers leave it to the parent. The workers are
    held in their first chunks until the signal is sent: a run that finished first made this test flaky."""
    export, hold = held_export(
        tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job is
    )
    workers: list[int] = []
    try:
        workers = held(hold, 2, export)
        for pid in workers:  # the mechanism: each worker ignores SIGINT (bit 2 of SigIgn is signal 2)
            ignored = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if "SigIgn" in line)
            assert int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1)), ignored
        os.killpg(export.pid, signal.SIGINT)
        assert ended(export, timeout=60) == 130
        assert export.stderr.read() == "personagym-hf: interrupted; earlier outputs are unchanged\n"
    finally:
        if export.poll() is None:
            os.killpg(export.pid, signal.SIGKILL)
        for pid in _running(workers):
            os.kill(pid, signal.SIGKILL)
    assert not (tmp_path / "out").exists()
