"""The Ray test infrastructure of `ray_support`: the loopback check, a local instance, a two-node cluster, a worker
killed mid-task, and where Ray writes. The Ray tests run only in a loopback-only network namespace (the README's
test command); anywhere else they are skipped with the reason, which the first tests check."""

import importlib.util
import os
import re
import socket
import tempfile
import time
from pathlib import Path

import pytest
import ray_support
from ray_support import kill_recorded_worker, loopback_only, outside_ray_state, record_pid, recorded_pids

COMMAND = "unshare -n sh -c 'ip link set lo up && .venv/bin/python -m pytest'"


def interfaces(monkeypatch, *names: str, up: bool = True) -> None:
    monkeypatch.setattr(socket, "if_nameindex", lambda: list(enumerate(names, start=1)))
    monkeypatch.setattr(ray_support, "interface_is_up", lambda name: up)


def test_loopback_only_names_every_other_interface(monkeypatch):
    interfaces(monkeypatch, "lo", "eth0", "ifb0")
    assert loopback_only() == (
        "Ray tests run only in a loopback-only network namespace, and eth0, ifb0 are visible besides lo: "
        f"run {COMMAND} (unshare -rn as a user who is not root)"
    )
    interfaces(monkeypatch, "eth0", "lo")
    assert loopback_only() == (
        f"Ray tests run only in a loopback-only network namespace, and eth0 is visible besides lo: run {COMMAND} "
        "(unshare -rn as a user who is not root)"
    )


def test_loopback_only_needs_lo_and_lo_up(monkeypatch):
    interfaces(monkeypatch, "lo")
    assert loopback_only() is None
    interfaces(monkeypatch, "lo", up=False)
    assert loopback_only() == (
        "Ray tests need the loopback interface up, and lo is down: run ip link set lo up in the namespace first"
    )
    interfaces(monkeypatch)
    assert loopback_only() == (
        f"Ray tests need the loopback interface lo, and this network namespace has none: run {COMMAND}"
    )


def test_the_fixtures_skip_without_ray(monkeypatch):
    interfaces(monkeypatch, "lo")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert ray_support.ray_unavailable() is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert ray_support.ray_unavailable() == "ray is not installed: pip install -e '.[ray]'"
    interfaces(monkeypatch, "lo", "eth0")
    assert ray_support.ray_unavailable() == "ray is not installed: pip install -e '.[ray]'"


def test_ray_folders_leave_room_for_ray_s_sockets(tmp_path_factory):
    folders = ray_support.RayFolders(tmp_path_factory.mktemp("r"))
    folders.make()
    assert sorted(path.name for path in folders.root.iterdir()) == ["home", "ray", "tmp"]
    assert (folders.home / "ray_bootstrap_config.yaml").read_text(encoding="utf-8") == "{}\n"
    deep = Path("/tmp", "x" * 60)
    longest = len(f"{deep}/ray/session_2026-12-01_18-09-15_293879_{os.getpid()}/sockets/plasma_store.9")
    message = (
        f"Ray's socket paths under {deep}/ray would be {longest} bytes long, and AF_UNIX paths are at most 107: "
        "give pytest a shorter --basetemp"
    )
    with pytest.raises(pytest.fail.Exception, match=f"^{re.escape(message)}$"):
        ray_support.RayFolders(deep).make()
    assert not deep.exists()


def test_loopback_only_reads_the_kernel():
    names = ray_support.interface_names()
    assert "lo" in names and ray_support.interface_is_up("lo")
    assert (loopback_only() is None) == (names == ["lo"])


def test_ci_runs_the_readme_test_command_in_the_namespace():
    root = Path(__file__).parents[2]
    command = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]
    assert command == f'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && {ray_support.NAMESPACE_COMMAND}'
    assert f"```bash\n{command}\n```" in (root / "README.md").read_text(encoding="utf-8")


# The cluster first: ray.init sets RAY_USAGE_STATS_ENABLED=0 in the driver's environment, which a cluster started
# after it would inherit whatever RAY_ENV says.


def test_a_two_node_cluster_runs_tasks_on_both_nodes(ray_cluster, tmp_path):
    import ray

    @ray.remote(num_cpus=1)
    def meet(folder: str, count: int) -> str:
        """Hold this node's one CPU until `count` tasks run at once: so they run on `count` nodes."""
        node = ray.get_runtime_context().get_node_id()
        Path(folder, f"{node}-{os.getpid()}").touch()
        for _ in range(600):
            if len(os.listdir(folder)) >= count:
                return node
            time.sleep(0.05)
        raise TimeoutError(f"{count} tasks did not run at once within 30 s")

    (tmp_path / "met").mkdir()
    nodes = ray.get([meet.remote(str(tmp_path / "met"), 2) for _ in range(2)], timeout=60)
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(alive) == 2 and set(nodes) == alive
    assert ray.cluster_resources()["CPU"] == 2
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    assert listening_addresses() <= LOOPBACK
    assert ray_cluster.session_dir.parent == ray_cluster.folders.temp_dir


def test_the_cluster_reports_no_usage(ray_cluster):
    log = (ray_cluster.session_dir / "logs" / "dashboard.log").read_text(encoding="utf-8")
    assert "Usage reporting is disabled." in log


def test_a_task_runs_on_loopback_with_the_test_folders(ray_local):
    import ray

    @ray.remote
    def where(a: int, b: int) -> dict:
        return {
            "sum": a + b,
            "ip": ray.util.get_node_ip_address(),
            "home": os.environ["HOME"],
            "tmp": tempfile.gettempdir(),
            "pid": os.getpid(),
        }

    done = ray.get(where.remote(20, 22), timeout=30)
    folders = ray_local.folders
    assert done == {
        "sum": 42,
        "ip": "127.0.0.1",
        "home": str(folders.home),
        "tmp": str(folders.tmp),
        "pid": done["pid"],
    }
    assert done["pid"] != os.getpid()
    assert ray_local.address.startswith("127.0.0.1:")


def listening_addresses() -> set[str]:
    """The local addresses of every listening TCP socket of this network namespace."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
            local, _, state = line.split()[1:4]
            if state == "0A":  # LISTEN
                found.add(local.split(":")[0].rjust(width, "0"))
    return found


LOOPBACK = {
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


def test_ray_listens_on_loopback_only(ray_local):
    listening = listening_addresses()
    assert listening and listening <= LOOPBACK
    # what a server listening on every interface looks like (harmless here: the namespace has nothing but lo)
    with socket.create_server(("0.0.0.0", 0)):
        assert listening_addresses() - LOOPBACK == {"00000000"}


def test_ray_writes_only_under_the_test_temp_folder(ray_local, ray_runtime, tmp_path_factory):
    folders = ray_local.folders
    assert folders.root.is_relative_to(tmp_path_factory.getbasetemp())
    assert ray_local.session_dir.parent == folders.temp_dir
    assert (ray_local.session_dir / "logs").is_dir()
    # the token comes from RAY_AUTH_TOKEN, so ray.init writes no ~/.ray/auth_token, not even in the fake home
    assert sorted(path.name for path in folders.home.iterdir()) == ["ray_bootstrap_config.yaml"]
    assert outside_ray_state() == ray_runtime.outside_before


def test_a_killed_worker_s_task_is_retried(ray_local, tmp_path):
    import ray

    pids = tmp_path / "pids"

    @ray.remote(max_retries=1)
    def square(x: int) -> int:
        if record_pid(pids) == 1:
            time.sleep(60)  # the test kills this worker here
            return -1
        return x * x

    task = square.remote(7)
    killed = kill_recorded_worker(pids)
    assert ray.get(task, timeout=60) == 49
    first, second = recorded_pids(pids)
    assert first == killed and second != killed


def test_a_killed_worker_s_task_fails_without_retries(ray_local, tmp_path):
    import ray
    from ray.exceptions import WorkerCrashedError

    pids = tmp_path / "pids"

    @ray.remote(max_retries=0)
    def square(x: int) -> int:
        record_pid(pids)
        time.sleep(60)
        return x * x

    task = square.remote(7)
    killed = kill_recorded_worker(pids)
    with pytest.raises(WorkerCrashedError, match="The worker died unexpectedly while executing this task"):
        ray.get(task, timeout=60)
    assert recorded_pids(pids) == [killed]
