"""An export is a transaction: the output folder is the whole old export or the whole new one at every
instant, one export writes it at a time, and every failure is one line that leaves it as it was."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_interaction, write_files
from disks import mounted_tmpfs
from exporting import snapshot
from holds import held, hold_env

from personagym_hf.cli.main import main
from personagym_hf.testing.synth import write_store
from personagym_hf.write.exporter import is_export_file
from personagym_hf.write.folder import OutputFolder

ROOT = Path(__file__).resolve().parents[2]


def export(store: Path, out: Path, *options: str) -> int:
    return main(["export", "--interactions", str(store), "--output", str(out), "-q", *options])


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "personagym_hf", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


@pytest.fixture
def stores(tmp_path) -> tuple[Path, Path]:
    """Two different stores: an export of `new` replaces an export of `old`."""
    old = write_files(tmp_path / "old", [make_interaction(i, persona=f"persona_{i % 4:03d}") for i in range(8)])
    new = write_files(tmp_path / "new", [make_interaction(i, persona=f"persona_{i % 7:03d}") for i in range(21)])
    return old, new


def test_the_new_export_replaces_the_old_as_a_whole_and_keeps_the_users_files(stores, tmp_path):
    old, new = stores
    out = tmp_path / "out"
    assert export(old, out) == 0
    (out / "my_notes.txt").write_text("mine", encoding="utf-8")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_bytes(b"png")
    (out / "train_samples_20260101_000000.json").write_text("[]\n", encoding="utf-8")  # an earlier version
    assert export(new, tmp_path / "reference") == 0
    assert export(new, out) == 0
    after = snapshot(out)
    assert {k: v for k, v in after.items() if is_export_file(k.split("/")[0])} == snapshot(tmp_path / "reference")
    assert after["my_notes.txt"] == b"mine" and after["mine/plot.png"] == b"png"
    assert after["train_samples_20260101_000000.json"] == b"[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old", "out", "reference"]  # no debris


def test_a_re_export_in_the_other_layout_leaves_no_stale_file(stores, tmp_path):
    old, _ = stores
    out = tmp_path / "out"
    assert export(old, out) == 0
    assert export(old, out, "--no-split") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".personagym-export.json",
        "hf_dataset",
        "statistics.json",
        "train_samples.json",
        "train_samples.jsonl",
    ]
    assert sorted(p.name for p in (out / "hf_dataset" / "data" / "full").iterdir()) == ["train-00000-of-00001.parquet"]
    assert export(old, out, "--no-hf-dataset") == 0
    assert not (out / "hf_dataset").exists() and (out / "val_samples.json").exists()


def test_an_output_that_is_a_file_is_one_line_before_any_work(stores, tmp_path, capsys):
    old, _ = stores
    (tmp_path / "out").write_text("not a folder", encoding="utf-8")
    assert export(old, tmp_path / "out") == 1
    assert error_line(capsys) == (
        f"personagym-hf export: error: {tmp_path / 'out'}: is a file, not a folder; pass --output with a folder path"
    )


def test_an_empty_store_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x", encoding="utf-8")
    assert export(tmp_path / "empty", tmp_path / "out") == 1
    assert error_line(capsys) == (
        f"personagym-hf export: error: no interaction files found in {tmp_path / 'empty'}; looked for upstream "
        "InteractionStorage files (*.json, one interaction each), JSON Lines (*.jsonl), JSON arrays (*.json), "
        "or .gz of any of them, in the folder and its subfolders"
    )
    assert not (tmp_path / "out").exists()


def test_a_store_whose_every_record_is_rejected_is_an_error(tmp_path, capsys):
    store = tmp_path / "bad"
    store.mkdir()
    (store / "a.json").write_text("{", encoding="utf-8")
    (store / "b.json").write_text("[1]", encoding="utf-8")
    assert export(store, tmp_path / "out") == 1
    line = error_line(capsys)
    first = f"{store}/a.json"
    assert line.startswith(f"personagym-hf export: error: all 2 records of {store} were rejected (the first: {first}")
    assert line.endswith(f"); run `personagym-hf validate --interactions {store}` to list them")
    assert not (tmp_path / "out").exists()


def test_a_second_export_into_a_locked_folder_stops_with_the_holder(stores, tmp_path, capsys):
    old, new = stores
    out = tmp_path / "out"
    assert export(old, out) == 0
    before = snapshot(out)
    holder = OutputFolder(out, is_export_file).open()
    try:
        assert export(new, out) == 1
        assert error_line(capsys) == (
            f"personagym-hf export: error: {out} is being written by another export (pid {os.getpid()} on "
            f"{socket.gethostname()}); wait for it to finish, or pass --wait to queue behind it"
        )
    finally:
        holder.abort()
    assert snapshot(out) == before
    assert export(new, out) == 0  # released: the next run goes ahead


def test_two_exports_started_together_give_one_complete_export(tmp_path):
    store = write_store(tmp_path / "store", count=1500, personas=60, seed=5, reply_chars=200)
    out = tmp_path / "out"
    args = ["export", "--interactions", str(store), "--output", str(out), "-q"]
    first = cli(*args)
    time.sleep(0.3)
    second, third = cli(*args), cli(*args, "--wait")
    (code1, _), (code2, err2), (code3, err3) = [(p.wait(timeout=120), p.stderr.read()) for p in (first, second, third)]
    assert (code1, code3, err3) == (0, 0, "")
    # The second stops at once with the reason if it found the folder locked, else it ran on its own.
    assert (code2, err2) == (0, "") or (code2 == 1 and "is being written by another export (pid " in err2), err2
    rows = [json.loads(line) for line in (out / "train_samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert json.loads((out / "train_samples.json").read_text(encoding="utf-8")) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB disk, to fill."""
    yield from mounted_tmpfs(tmp_path / "disk", "3m")


def test_a_full_disk_is_one_line_and_keeps_the_earlier_export(small_disk, tmp_path, capsys):
    small = write_files(tmp_path / "small", [make_interaction(i, persona=f"persona_{i % 3:03d}") for i in range(6)])
    big = write_store(tmp_path / "big", count=800, personas=40, seed=2, reply_chars=400)
    out = small_disk / "out"
    assert export(small, out) == 0
    before = snapshot(out)
    assert export(big, out) == 1
    line = error_line(capsys)
    assert line.startswith(f"personagym-hf export: error: no space left on device writing {out} (needed ~")
    assert line.endswith(" MB); free some space or choose another --output (the earlier export there is unchanged)")
    assert snapshot(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["out"]  # no staging folder, no temp file


@pytest.fixture
def sized_disk(tmp_path, size):
    """A disk of `size` (the test's parameter), to fill."""
    yield from mounted_tmpfs(tmp_path / "disk", size)


@pytest.mark.parametrize("hf_dataset", [True, False], ids=["hf_dataset", "no_hf_dataset"])
@pytest.mark.parametrize("size", ["1m", "2m", "3m"])
def test_a_full_disk_of_any_size_is_one_line(sized_disk, tmp_path, capsys, size, hf_dataset):
    """On 1 and 2 MB the disk filled up while the JSON was written, and the abort ended in a traceback: closing the
    aborted file flushed a buffer the disk could not take (`AtomicFile.abort`)."""
    small = write_files(tmp_path / "small", [make_interaction(i, persona=f"p_{i % 3:03d}") for i in range(6)])
    big = write_store(tmp_path / "big", count=800, personas=40, seed=2, reply_chars=400)
    out = sized_disk / "out"
    options = () if hf_dataset else ("--no-hf-dataset",)
    assert export(small, out, *options) == 0
    before = snapshot(out)
    assert export(big, out, *options) == 1
    line = error_line(capsys)
    assert line.startswith(f"personagym-hf export: error: no space left on device writing {out} (needed ~")
    assert line.endswith(" MB); free some space or choose another --output (the earlier export there is unchanged)")
    assert snapshot(out) == before
    assert sorted(p.name for p in sized_disk.iterdir()) == ["out"]  # no staging folder, no temp file


def test_aborting_a_file_whose_buffer_the_disk_refuses_raises_nothing(tmp_path):
    """The mechanism: /dev/full refuses every write with ENOSPC, as a full disk does."""
    from personagym_hf.write.files import AtomicFile, OutputSet

    files = OutputSet()
    for name in ("a.json", "b.json"):
        out = files.open(AtomicFile(tmp_path / name))
        out.file.close()
        out.file = open("/dev/full", "wb", buffering=1 << 20)  # closed by abort
        out.write(b"x" * 1000)  # buffered: the disk is asked at the flush
        with pytest.raises(OSError):
            out.file.flush()
    files.abort()
    assert all(out.file.closed for out in files.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_read_only_output_is_one_line_before_any_work(small_disk, tmp_path, capsys):
    small = write_files(tmp_path / "small", [make_interaction(i, persona=f"persona_{i % 3:03d}") for i in range(6)])
    out = small_disk / "out"
    assert export(small, out) == 0
    before = snapshot(out)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert export(small, out) == 1
    assert error_line(capsys) == (
        f"personagym-hf export: error: cannot write to {out}: read-only file system; choose another --output "
        "or make it writable"
    )
    assert snapshot(out) == before


# -- kill -9 at any instant ------------------------------------------------------------------------------------


def folder_state(out: Path, old: dict, new: dict) -> str:
    now = snapshot(out) if out.exists() else None
    return "old" if now == old else "new" if now == new else "mixed"


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    """A store exported once (`old`), a bigger store (`new`), and the reference export of `new`."""
    base = tmp_path_factory.mktemp("kill")
    old = write_store(base / "old", count=300, personas=30, seed=1, reply_chars=200)
    new = write_store(base / "new", count=3000, personas=150, seed=4, reply_chars=200)
    reference, seed_out, timed = base / "reference", base / "seed_out", base / "timed"

    def run_export(store: Path, out: Path) -> None:
        done = cli("export", "--interactions", str(store), "--output", str(out), "-q")
        assert done.wait(timeout=120) == 0, done.stderr.read()

    run_export(new, reference)
    run_export(old, seed_out)
    (seed_out / "my_notes.txt").write_text("mine", encoding="utf-8")
    subprocess.run(["cp", "-a", str(seed_out), str(timed)], check=True)
    start = time.monotonic()
    run_export(new, timed)
    duration = time.monotonic() - start
    expected_new = {**snapshot(reference), "my_notes.txt": b"mine"}
    return new, seed_out, snapshot(seed_out), expected_new, duration


def kill_and_check(kill_setup, tmp_path, *, delay: float | None = None, at: str | None = None) -> str:
    new, seed_out, old_state, new_state, _ = kill_setup
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    out = work / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    subprocess.run(["cp", "-a", str(seed_out), str(out)], check=True)
    args = ["export", "--interactions", str(new), "--output", str(out), "-q"]
    process = cli(*args, env={"PERSONAGYM_HF_KILL_AT": at} if at else None)
    if delay is not None:
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    code = process.wait(timeout=120)
    state = folder_state(out, old_state, new_state)
    assert state != "mixed", (delay, at, code)
    rerun = cli(*args)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
    assert snapshot(out) == new_state
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # the rerun left no staging or old folder
    return state


@pytest.mark.parametrize("at", ["before-swap", "after-swap"])
def test_a_kill_inside_the_final_step_leaves_old_or_new(kill_setup, tmp_path, at):
    state = kill_and_check(kill_setup, tmp_path, at=at)
    assert state == ("old" if at == "before-swap" else "new")


def test_a_kill_at_any_instant_never_leaves_a_mixed_folder(kill_setup, tmp_path):
    duration = kill_setup[-1]
    states = [kill_and_check(kill_setup, tmp_path, delay=duration * k / 12) for k in range(1, 14)]
    assert "old" in states  # the sweep did kill runs in flight


def test_without_an_atomic_exchange_a_kill_between_the_renames_is_repaired(stores, tmp_path, monkeypatch):
    import personagym_hf.write.folder as transaction

    old, new = stores
    out = tmp_path / "out"
    assert export(old, out) == 0
    before = snapshot(out)
    monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)

    class Killed(BaseException):
        pass

    def killed(name):
        if name == "between-renames":
            raise Killed

    monkeypatch.setattr(transaction, "checkpoint", killed)
    monkeypatch.setattr(OutputFolder, "abort", lambda self: os.close(self._lock_fd))  # as the kernel does at a kill
    with pytest.raises(Killed):
        export(old, out)
    assert not out.exists() and len(list(tmp_path.glob(".out.old-*"))) == 1
    monkeypatch.undo()
    # The next run puts the old export back before anything else.
    OutputFolder(out, is_export_file).open().abort()
    assert snapshot(out) == before
    assert export(new, tmp_path / "reference") == 0
    assert export(new, out) == 0
    assert snapshot(out) == snapshot(tmp_path / "reference")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old", "out", "reference"]


def test_sigterm_unwinds_and_leaves_the_earlier_export(kill_setup, tmp_path):
    new, seed_out, old_state, _, _ = kill_setup
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(seed_out), str(out)], check=True)
    hold = tmp_path / "hold"
    args = ["export", "--interactions", str(new), "--output", str(out), "-q", "--num-proc", "2"]
    process = cli(*args, env=hold_env(hold))
    held(hold, 2, process)  # the export is under way, its workers held in their first chunks until the signal
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert process.stderr.read() == "personagym-hf: terminated; earlier outputs are unchanged\n"
    assert snapshot(out) == old_state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hold", "out"]


@pytest.fixture
def volume(tmp_path):
    """An output folder that is a mount point, as a container's volume is."""
    yield from mounted_tmpfs(tmp_path / "vol", "64m")


def test_an_output_folder_that_is_a_mount_point_is_exported_into(stores, tmp_path, volume):
    old, new = stores
    assert export(old, volume) == 0
    (volume / "my_notes.txt").write_text("mine", encoding="utf-8")
    assert export(new, tmp_path / "reference") == 0
    assert export(new, volume, "--no-split") == 0
    assert export(new, tmp_path / "reference_nosplit", "--no-split") == 0
    after = snapshot(volume)
    assert after.pop("my_notes.txt") == b"mine"
    assert after == snapshot(tmp_path / "reference_nosplit")  # the split files of the old export are gone too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old", "reference", "reference_nosplit", "vol"]


@pytest.mark.parametrize("at", ["before-swap", "mid-move"])
def test_a_kill_while_moving_into_a_mount_point_is_finished_by_the_next_run(stores, tmp_path, volume, at):
    old, new = stores
    assert export(old, volume) == 0
    assert export(new, tmp_path / "reference", "--no-split") == 0
    killed = cli("export", "--interactions", str(new), "--output", str(volume), "-q", "--no-split",
                 env={"PERSONAGYM_HF_KILL_AT": at})  # fmt: skip
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert list(volume.glob(".personagym-staging-*"))
    OutputFolder(volume, is_export_file).open().abort()  # what the next run does first: roll the move forward
    assert snapshot(volume) == snapshot(tmp_path / "reference")
    assert not [p.name for p in volume.iterdir() if p.name.startswith((".personagym-staging-", ".personagym-old-"))]
