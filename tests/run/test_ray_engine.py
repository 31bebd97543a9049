"""`--engine ray`: the same bytes as the local export, on a local Ray instance and on a 2-node cluster.

Every test here starts Ray, so it runs only in a network namespace with nothing but loopback (`ray_support.py`);
elsewhere it is skipped with the reason.
"""

import hashlib
import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cut_stores import array_store, jsonl_store
from exporting import export_store
from ray_support import Dies, ModuleLog, NodeLog

from personagym_hf.config import RunOptions, parse_config
from personagym_hf.read.demo import demo_store_path
from personagym_hf.read.plan import Files
from personagym_hf.run.chunks import ChunkJob, ChunkTask
from personagym_hf.run.ray_runner import RayConnectError
from personagym_hf.testing.synth import write_store
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.encode import Encoder
from personagym_hf.transform.policy import BadInputError
from personagym_hf.write import parquet as shards

RAY = RunOptions(engine="ray")
SMALL_CHUNKS = RunOptions(chunk_files=7)


def sums(folder: Path) -> dict[str, str]:
    """sha256 of every file under the output folder, hf_dataset/ included."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def awkward_store(folder: Path) -> Path:
    """60 files in chunks of 7: an id repeated 8 chunks later, a bad JSONL line, a record without messages."""
    store = write_store(folder, count=60, personas=25, seed=4, reply_chars=50)
    first = json.loads(sorted(store.glob("interaction_*.json"))[0].read_text(encoding="utf-8"))
    (store / "zz_copy.json").write_text(json.dumps(first), encoding="utf-8")
    (store / "zz_bad.jsonl").write_text('not json\n{"persona_id": "p"}\n', encoding="utf-8")
    return store


def both(store, tmp_path: Path, options: RunOptions, convert=interaction_to_sample, **kwargs) -> tuple[dict, dict]:
    cfg = parse_config({})
    export_store(store, tmp_path / "local", cfg, convert, options=options, **kwargs)
    export_store(store, tmp_path / "ray", cfg, convert, options=replace(options, engine="ray"), **kwargs)
    return sums(tmp_path / "local"), sums(tmp_path / "ray")


def test_the_demo_store_gives_the_same_bytes_on_ray(ray_local, tmp_path):
    local, ray = both(demo_store_path(), tmp_path, RunOptions())
    assert local == ray
    assert "hf_dataset/data/full/train-00000-of-00001.parquet" in ray


def test_duplicates_across_chunks_and_bad_records_give_the_same_bytes_and_reports(ray_local, tmp_path):
    store = awkward_store(tmp_path / "s")
    local, ray = both(store, tmp_path, SMALL_CHUNKS)
    assert local == ray
    rejected = [json.loads(line) for line in (tmp_path / "ray" / "rejected.jsonl").read_text().splitlines()]
    assert [(Path(r["file"]).name, r["where"], r["reason"][:24]) for r in rejected] == [
        ("zz_bad.jsonl", "line 1, column 1", "invalid JSON (invalid li"),
        ("zz_bad.jsonl", "line 2", "missing 'messages'"),
        ("zz_copy.json", "", "duplicate interaction_id"),
    ]


def test_jsonl_files_in_byte_ranges_give_the_same_bytes(ray_local, tmp_path):
    local, ray = both(jsonl_store(tmp_path / "s"), tmp_path, RunOptions(chunk_bytes=16384))
    assert local == ray


def test_json_arrays_in_pieces_give_the_same_bytes(ray_local, tmp_path):
    local, ray = both(array_store(tmp_path / "s"), tmp_path, RunOptions(chunk_bytes=16384))
    assert local == ray
    assert json.loads((tmp_path / "ray" / "statistics.json").read_text())["total_samples"] == 449


def test_an_append_on_ray_gives_the_bytes_of_a_local_append(ray_local, tmp_path):
    """The earlier export's rows reach the shard tasks through an Arrow file the driver writes in its staging."""
    first = write_store(tmp_path / "first", count=30, personas=12, seed=8, reply_chars=40)
    store = write_store(tmp_path / "s", count=60, personas=25, seed=4, reply_chars=50)
    small = RunOptions(chunk_files=7, row_group_rows=4, max_shard_bytes=8_000)
    cfg = parse_config({})
    for name, options in (("local", small), ("ray", replace(small, engine="ray"))):
        export_store(first, tmp_path / name, cfg, interaction_to_sample, options=options)
        export_store(store, tmp_path / name, cfg, interaction_to_sample, options=options, append=True)
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
    assert len(list((tmp_path / "ray/hf_dataset/data/full").glob("train-*.parquet"))) > 3


def test_ray_tasks_write_the_shards_and_the_driver_writes_no_parquet(ray_local, tmp_path, monkeypatch):
    store = write_store(tmp_path / "s", count=60, personas=25, seed=4, reply_chars=50)
    small = RunOptions(chunk_files=7, row_group_rows=4, max_shard_bytes=8_000)
    cfg = parse_config({})
    export_store(store, tmp_path / "local", cfg, interaction_to_sample, options=small)

    def not_here(*args, **kwargs):
        raise AssertionError("the driver wrote Parquet")

    monkeypatch.setattr(shards.pq, "ParquetWriter", not_here)  # the driver's only: Ray's workers import their own
    export_store(store, tmp_path / "ray", cfg, interaction_to_sample, options=replace(small, engine="ray"))
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
    train = sorted((tmp_path / "ray/hf_dataset/data/full").glob("train-*.parquet"))
    assert len(train) > 3, train
    assert not list((tmp_path / "ray").rglob("*.arrow"))


def test_the_kept_ids_are_indexed_in_bucket_actors_and_not_in_the_driver(ray_local, tmp_path, monkeypatch):
    from personagym_hf.measure.seen import SeenIds
    from personagym_hf.run import ray_runner as ray_engine

    store = awkward_store(tmp_path / "s")  # its copy of the first interaction is read 8 chunks later
    cfg = parse_config({})
    export_store(store, tmp_path / "local", cfg, interaction_to_sample, options=SMALL_CHUNKS)
    indexes, counts = [], []  # one index for the splits' pre-pass, one for the export's pass
    real_index = ray_engine.RayRunner.id_index

    def kept_index(self):
        index = real_index(self)
        real_close, index.close = index.close, lambda: counts.append(index.counts()) or real_close()
        indexes.append(index)
        return index

    def not_here(*args, **kwargs):
        raise AssertionError("the driver indexed the ids")

    monkeypatch.setattr(ray_engine.RayRunner, "id_index", kept_index)
    monkeypatch.setattr(SeenIds, "find_and_add", not_here)  # the driver's only: the actors import their own
    export_store(store, tmp_path / "ray", cfg, interaction_to_sample, options=replace(SMALL_CHUNKS, engine="ray"))
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
    assert len(indexes) == len(counts) == 2
    for index, held in zip(indexes, counts):  # the pre-pass keeps the same samples as the export's pass
        assert len(index.buckets) == 2 and all(count > 10 for count in held) and sum(held) == 60, held
    rejected = [json.loads(line) for line in (tmp_path / "ray" / "rejected.jsonl").read_text().splitlines()]
    first = sorted(store.glob("interaction_*.json"))[0].as_posix()
    assert [r["reason"] for r in rejected if r["file"].endswith("zz_copy.json")] == [
        f"duplicate interaction_id (already read from {first}); kept the first"
    ]


def test_the_bucketed_index_finds_what_one_index_finds_and_an_actor_lost_is_one_line(ray_local):
    import random

    import numpy as np
    import ray

    from personagym_hf.measure.seen import SeenIds, digests
    from personagym_hf.run.ray_runner import RayIdIndex, RayTaskFailed

    index, reference, rng = RayIdIndex(ray, 3), SeenIds(), random.Random(3)
    for batch in range(30):
        ids = list(dict.fromkeys(f"id{rng.randrange(1500)}" for _ in range(rng.randrange(0, 80))))
        locations = np.arange(batch * 100, batch * 100 + len(ids), dtype=np.int64)
        got = index.find_and_add(*digests(ids), locations)
        assert got.tolist() == reference.find_and_add(*digests(ids), locations).tolist()
    assert sum(index.counts()) == len(reference) > 500 and min(index.counts()) > 100
    ray.kill(index.buckets[1])
    deadline = time.monotonic() + 30  # ray.kill returns before the actor is gone: a call sent meanwhile may succeed
    while time.monotonic() < deadline:
        try:
            ray.get(index.buckets[1].count.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            break
        time.sleep(0.05)
    with pytest.raises(RayTaskFailed) as caught:
        index.find_and_add(*digests([f"id{n}" for n in range(20)]), np.arange(20, dtype=np.int64))
    assert str(caught.value) == (
        "Ray lost the index of the sample ids read so far (ActorDiedError: its actor died); the earlier export is "
        "unchanged: rerun"
    )
    index.close()


def test_a_two_node_cluster_gives_the_same_bytes(ray_cluster, tmp_path):
    import ray

    store = awkward_store(tmp_path / "s")
    cfg, nodes = parse_config({}), tmp_path / "nodes"
    export_store(store, tmp_path / "local", cfg, NodeLog(tmp_path / "driver"), options=SMALL_CHUNKS)
    export_store(store, tmp_path / "ray", cfg, NodeLog(nodes, 0.02), options=replace(SMALL_CHUNKS, engine="ray"))
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
    assert len([node for node in ray.nodes() if node["Alive"]]) == 2
    assert len(set(nodes.read_text(encoding="ascii").split())) == 2  # the chunks ran on both nodes


def test_the_runtime_env_ships_this_package_to_the_workers(ray_cluster, tmp_path, monkeypatch):
    """`--runtime-env-json '{"py_modules": [...]}'`: the workers import the copy the driver shipped."""
    import ray

    import personagym_hf

    # Ray puts the driver's working directory first on its workers' sys.path: from the checkout's root that would be
    # the checkout's own personagym_hf/, ahead of any shipped copy.
    monkeypatch.chdir(tmp_path)
    store = write_store(tmp_path / "s", count=30, personas=10, seed=3, reply_chars=40)  # no duplicate for the driver
    cfg, log = parse_config({}), tmp_path / "imported"
    package = str(Path(personagym_hf.__file__).parent)
    export_store(store, tmp_path / "local", cfg, ModuleLog(tmp_path / "driver"), options=SMALL_CHUNKS)
    ray.shutdown()  # the driver only: this export connects with the runtime environment, then disconnects
    try:
        shipped = replace(
            SMALL_CHUNKS, engine="ray", ray_address=ray_cluster.address, ray_runtime_env={"py_modules": [package]}
        )
        export_store(store, tmp_path / "ray", cfg, ModuleLog(log), options=shipped)
        assert not ray.is_initialized()
        missing = {"py_modules": [str(tmp_path / "no_such_package")], "env_vars": {"HF_TOKEN": "hf_secret_value"}}
        with pytest.raises(RayConnectError) as raised:
            export_store(
                store, tmp_path / "ray", cfg, ModuleLog(log), options=replace(shipped, ray_runtime_env=missing)
            )
    finally:
        ray.init(address=ray_cluster.address)  # as the fixture left it, for the module's next tests
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
    imported = set(log.read_text(encoding="utf-8").split())
    assert imported and all("/runtime_resources/py_modules_files/" in path for path in imported), imported
    assert str(raised.value).startswith("Ray refused the runtime environment (--runtime-env-json): ")
    assert "hf_secret_value" not in str(raised.value)


def test_a_worker_killed_mid_chunk_is_retried_and_the_bytes_are_the_same(ray_local, tmp_path):
    store = write_store(tmp_path / "s", count=40, personas=10, seed=2, reply_chars=40)
    victim = json.loads(sorted(store.glob("interaction_*.json"))[17].read_text(encoding="utf-8"))["interaction_id"]
    marker = tmp_path / "killed"
    cfg = parse_config({})
    marker.touch()  # the local reference export: no kill
    export_store(store, tmp_path / "local", cfg, Dies(victim, marker), options=SMALL_CHUNKS)
    marker.unlink()
    export_store(store, tmp_path / "ray", cfg, Dies(victim, marker), options=replace(SMALL_CHUNKS, engine="ray"))
    assert marker.exists()  # a worker did die
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")


def test_a_failing_export_on_ray_raises_the_local_error_and_keeps_the_earlier_export(ray_local, tmp_path):
    store = awkward_store(tmp_path / "s")
    cfg = parse_config({})
    export_store(store, tmp_path / "out", cfg, interaction_to_sample, options=SMALL_CHUNKS)
    before = sums(tmp_path / "out")
    strict = replace(cfg, on_bad_records="error")
    with pytest.raises(BadInputError) as local:
        export_store(store, tmp_path / "other", strict, interaction_to_sample, options=SMALL_CHUNKS)
    with pytest.raises(BadInputError) as on_ray:
        export_store(
            store, tmp_path / "out", strict, interaction_to_sample, options=replace(SMALL_CHUNKS, engine="ray")
        )
    assert str(on_ray.value) == str(local.value)
    assert sums(tmp_path / "out") == before
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".out")]  # no staging folder left


def test_a_node_that_cannot_see_the_output_folder_stops_with_one_line(tmp_path):
    from personagym_hf.read.store import discover_paths
    from personagym_hf.run.ray_runner import NodeCannotSeeError, _encode_task

    store = write_store(tmp_path / "s", count=3, personas=2, seed=1, reply_chars=20)
    job = ChunkJob(discover_paths(store), Encoder(parse_config({}), False, True), interaction_to_sample)
    missing = tmp_path / "elsewhere" / ".chunks"
    with pytest.raises(
        NodeCannotSeeError, match=r"^node \S+ cannot see the export's staging folder .*elsewhere/\.chunks: "
    ):
        _encode_task(job, ChunkTask(0, Files(0, 3), str(missing / "000000")), str(tmp_path))
    assert not missing.exists()


def test_an_unreachable_cluster_is_one_line_within_seconds():
    import socket

    from personagym_hf.run.ray_runner import RayConnectError, _reachable  # what _connect checks before ray.init

    with socket.socket() as probe:  # a loopback port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RayConnectError) as raised:
        _reachable(f"127.0.0.1:{port}")
    assert str(raised.value) == (
        f"cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused); start it with `ray start --head` or "
        "fix --address"
    )
    with pytest.raises(RayConnectError, match=r"^--address 'head:x': expected HOST:PORT of the Ray head"):
        _reachable("head:x")


def test_a_chunk_whose_worker_always_dies_is_one_line_and_the_earlier_export_stays(ray_local, tmp_path):
    from personagym_hf.run.ray_runner import RETRIES, RayTaskFailed

    store = write_store(tmp_path / "s", count=20, personas=5, seed=2, reply_chars=40)
    victim = json.loads(sorted(store.glob("interaction_*.json"))[9].read_text(encoding="utf-8"))["interaction_id"]
    cfg = parse_config({})
    export_store(store, tmp_path / "out", cfg, interaction_to_sample, options=SMALL_CHUNKS)
    before = sums(tmp_path / "out")
    with pytest.raises(RayTaskFailed) as raised:
        export_store(store, tmp_path / "out", cfg, Dies(victim), options=replace(SMALL_CHUNKS, engine="ray"))
    assert RETRIES == 3
    assert str(raised.value).startswith(f"Ray could not run chunk 1 (files[7:14] ({store.as_posix()}/interaction_")
    assert str(raised.value).endswith("; the earlier export is unchanged")
    assert "WorkerCrashedError" in str(raised.value) and "\n" not in str(raised.value)
    assert sums(tmp_path / "out") == before


def test_a_cluster_that_refuses_the_drivers_token_is_one_line_and_nothing_else(ray_runtime, tmp_path):
    """A head started with token authentication (`ray start --head --block`, a process of its own, so this process's
    Ray keeps no token); the export without the token: one line on stderr, where Ray's core wrote a warning a second
    for ~20 s."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = ray_runtime.folders.root / "h"  # short: Ray's socket paths under it must fit in 107 bytes
    ray = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "ab" * 32}
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=(tmp_path / "head.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(120):  # bounded: 60 s for the head to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(
                f"the Ray head did not listen on 127.0.0.1:{port} within 60 s: {(tmp_path / 'head.log').read_text()}"
            )
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
        out = tmp_path / "out"
        command = ["-m", "personagym_hf", "export", "--demo", "--output", str(out), "-q", "--engine", "ray"]
        done = subprocess.run(
            [sys.executable, *command, "--address", f"127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        _kill_processes_using(temp)
    assert done.returncode == 1
    assert done.stderr == (
        f"personagym-hf export: error: the Ray cluster at 127.0.0.1:{port} refused this driver's token: give the "
        "export the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and "
        "RAY_AUTH_MODE=token\n"
    )
    assert not out.exists()


def _kill_processes_using(folder: Path) -> None:
    """SIGKILL what a `ray start` left running (its GCS and raylet name their session folder under `folder`)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(folder).encode() in command:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_a_worker_killed_while_it_writes_a_shard_is_retried_and_the_bytes_are_the_same(ray_local, tmp_path):
    """Ray names a worker's process after the task it runs (`ray::_shard_task`): the first one seen is SIGKILLed."""
    import threading
    import time

    store = write_store(tmp_path / "s", count=6000, personas=300, seed=6, reply_chars=400)
    cfg = parse_config({})
    export_store(store, tmp_path / "local", cfg, interaction_to_sample)
    killed: list[int] = []
    stop = threading.Event()

    def kill_a_shard_writer() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and not killed and time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_shard_task"):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed.append(int(entry.name))
                        return
                except (OSError, ValueError):
                    continue

    watcher = threading.Thread(target=kill_a_shard_writer)
    watcher.start()
    try:
        export_store(store, tmp_path / "ray", cfg, interaction_to_sample, options=RAY)
    finally:
        stop.set()
        watcher.join()
    assert killed, "no shard task was seen running"
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")
