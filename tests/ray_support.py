"""Ray for the tests, on loopback only, with every folder it writes in the test's temp folder.

The project's rule: tests talk only to loopback. Ray breaks it twice, so its tests run only inside a network
namespace that has nothing but `lo` (`unshare -n sh -c 'ip link set lo up && .venv/bin/python -m pytest'`, as the
README's test command does), and these fixtures skip with the reason anywhere else:

- it listens on every interface (the GCS, the node manager and the object manager bind `::`) unless the node's
  address is 127.0.0.1, and `ray.init` finds that address itself: `_node_ip_address="127.0.0.1"` is no help, it is
  turned into "a remotely reachable address" (`services.resolve_ip_for_localhost`) by asking the route to 8.8.8.8
  and then the host name. Only where `lo` is the one interface is the answer 127.0.0.1 (the fixtures check that it
  is). `cluster_utils.Cluster` takes `node_ip_address` as given.
- its head process probes outside addresses even with usage stats off: the cloud metadata service
  (169.254.169.254, a DNS lookup of metadata.google.internal) unless `~/ray_bootstrap_config.yaml` exists, and a
  cluster not made by `ray.init` posts a "usage stats disabled" notice to usage-stats.ray.io. `RAY_ENV` and the
  fake home below keep both on loopback, the namespace keeps everything else there.

Fixtures (conftest.py loads this module through `pytest_plugins`); a test that uses one is marked `ray`:
    ray_runtime  module scope: the skip checks, the environment (`RAY_TMPDIR`, `HOME`, `TMPDIR` in the module's temp
                 folder, `RAY_ENV`) and the one Ray runtime this process is connected to, stopped after the module.
    ray_local    `ray.init` of a local instance (2 CPUs), reused by the module's tests that ask for it.
    ray_cluster  `cluster_utils.Cluster`: a head and one worker node, 1 CPU each, reused the same way.

Module scope, because starting Ray takes seconds (docs/performance.md: Ray) and a test module's tests can share it,
as Ray's own `ray_start_regular_shared` fixture does; not session scope, because the environment it needs (another
HOME) must not leak into the rest of the suite and its processes should not stay up through it. A driver is
connected to one runtime at a time, so a module that uses both fixtures switches between them: group its tests by
fixture.

Helpers for a test that kills a worker mid-task (`record_pid` in the task, `kill_recorded_worker` in the test).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import secrets
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

__all__ = [
    "RAY_ENV",
    "RayFolders",
    "RayRuntime",
    "RaySession",
    "kill_recorded_worker",
    "loopback_only",
    "outside_ray_state",
    "ray_unavailable",
    "ray_cluster",
    "ray_local",
    "ray_runtime",
    "record_pid",
    "recorded_pids",
]

NAMESPACE_COMMAND = "unshare -n sh -c 'ip link set lo up && .venv/bin/python -m pytest'"

# One token for the whole test session: a process caches the token it read first, so a runtime started later with
# another token would refuse this driver. Token authentication is what `ray.init` turns on by default in Ray 2.60.
_TOKEN = secrets.token_hex(32)

# Set for the whole session when this plugin is loaded, before anything imports ray, as hub_fixtures does for the
# HF clients: a process reads RAY_AUTH_MODE once (ray._raylet's config), so a test module that imports ray first would
# otherwise fix its driver in "disabled" mode, which a runtime started in token mode refuses.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # where a cluster not made by ray.init posts its "usage stats disabled" notice: a loopback port nothing serves
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": _TOKEN,
}
os.environ.update(RAY_ENV)

LOCAL_CPUS = 2
# the object store is shared memory (/dev/shm); Ray would size it at 30% of the machine's memory
OBJECT_STORE_BYTES = 128 * 1024 * 1024
START_TIMEOUT = 60.0
TESTS = Path(__file__).parent

# where Ray writes by default, as seen before any fixture changed HOME or TMPDIR
_REAL_HOME = Path.home()
_REAL_TMP = Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp")
# the longest path Ray puts under its folder: a session (named by its time and the driver's pid), the object store
# socket of a cluster's second to tenth node
_SOCKET_TAIL = "/session_2026-12-01_18-09-15_293879_{pid}/sockets/plasma_store.9"
_IFF_UP = 0x1
_SIOCGIFFLAGS = 0x8913


def interface_names() -> list[str]:
    """The network interfaces of this process's network namespace.

    `socket.if_nameindex()` asks the kernel for the current namespace; /sys/class/net is not used because it shows
    the namespace that mounted /sys, which `unshare -n` does not remount (it still lists eth0 inside).
    """
    return [name for _, name in socket.if_nameindex()]


def interface_is_up(name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request))[1]
    return bool(flags & _IFF_UP)


def loopback_only() -> str | None:
    """Why Ray may not run here (a skip reason), or None when `lo` is the only interface and it is up."""
    names = interface_names()
    others = [name for name in names if name != "lo"]
    if others:
        return (
            f"Ray tests run only in a loopback-only network namespace, and {', '.join(others)} "
            f"{'is' if len(others) == 1 else 'are'} visible besides lo: run {NAMESPACE_COMMAND} "
            "(unshare -rn as a user who is not root)"
        )
    if "lo" not in names:
        return (
            f"Ray tests need the loopback interface lo, and this network namespace has none: run {NAMESPACE_COMMAND}"
        )
    if not interface_is_up("lo"):
        return "Ray tests need the loopback interface up, and lo is down: run ip link set lo up in the namespace first"
    return None


def ray_unavailable() -> str | None:
    """Why the Ray fixtures skip here (ray not installed, or not a loopback-only namespace), or None."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed: pip install -e '.[ray]'"
    return loopback_only()


@dataclass(frozen=True)
class RayFolders:
    """Every folder Ray and its processes write to, under one test temp folder."""

    root: Path  # RAY_TMPDIR

    @property
    def temp_dir(self) -> Path:
        """Ray's own folder (`_temp_dir`): sessions, logs, sockets, the cluster address file."""
        return self.root / "ray"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def make(self) -> None:
        longest = len(os.fsencode(f"{self.temp_dir}{_SOCKET_TAIL.format(pid=os.getpid())}"))
        if longest > 107:
            pytest.fail(
                f"Ray's socket paths under {self.temp_dir} would be {longest} bytes long, and AF_UNIX paths are at "
                "most 107: give pytest a shorter --basetemp"
            )
        for folder in (self.temp_dir, self.home, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # read instead of asking the cloud metadata service where this node runs (usage_lib.get_cluster_config_...)
        (self.home / "ray_bootstrap_config.yaml").write_text("{}\n", encoding="utf-8")


@dataclass(frozen=True)
class RaySession:
    """What a test gets from `ray_local` or `ray_cluster`: the driver is connected to it."""

    folders: RayFolders
    address: str  # the GCS, host:port
    session_dir: Path
    cluster: Cluster | None = None  # the nodes of `ray_cluster`


class RayRuntime:
    """The one Ray runtime this process's driver is connected to, local or a cluster, switched on demand."""

    def __init__(self, folders: RayFolders) -> None:
        self.folders = folders
        self.session: RaySession | None = None
        self._sigterm: Any = None
        self.outside_before = outside_ray_state()

    def local(self) -> RaySession:
        if self.session is None or self.session.cluster is not None:
            self.stop()
            self._sigterm = signal.getsignal(signal.SIGTERM)
            import ray

            # address="local": never attach to a cluster named by RAY_ADDRESS or a ray_current_cluster file
            context = ray.init(
                address="local",
                num_cpus=LOCAL_CPUS,
                object_store_memory=OBJECT_STORE_BYTES,
                include_dashboard=False,
                _temp_dir=str(self.folders.temp_dir),
            )
            info = context.address_info
            self.session = self._connected(info["address"], info["session_dir"], info["node_ip_address"], None)
        return self.session

    def cluster(self) -> RaySession:
        if self.session is None or self.session.cluster is None:
            self.stop()
            self._sigterm = signal.getsignal(signal.SIGTERM)
            import ray
            from ray.cluster_utils import Cluster

            node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
            cluster = Cluster(initialize_head=True, head_node_args={**node, "temp_dir": str(self.folders.temp_dir)})
            try:
                cluster.add_node(**node)
                cluster.wait_for_nodes(timeout=START_TIMEOUT)
                ray.init(address=cluster.address)
            except BaseException:
                cluster.shutdown()
                raise
            head = cluster.head_node
            self.session = self._connected(cluster.address, head.get_session_dir_path(), head.node_ip_address, cluster)
        return self.session

    def _connected(self, address: str, session_dir: str, node_ip: str, cluster: Cluster | None) -> RaySession:
        session = RaySession(self.folders, address, Path(session_dir), cluster)
        self.session = session
        if node_ip != "127.0.0.1":
            self.stop()
            pytest.fail(f"Ray chose the node address {node_ip}, not 127.0.0.1, although only lo is visible")
        return session

    def stop(self) -> None:
        if self.session is None:
            return
        import ray

        try:
            ray.shutdown()
            if self.session.cluster is not None:
                self.session.cluster.shutdown()
        finally:
            self.session = None
            # ray.init replaced the driver's SIGTERM handler (sys.exit) and ray.shutdown leaves it in place
            signal.signal(signal.SIGTERM, self._sigterm)


def outside_ray_state() -> dict[str, list[tuple[str, int]] | None]:
    """The entries (name, mtime) of the folders Ray writes to by default: ~/.ray and /tmp/ray (None: absent)."""
    state = {}
    for folder in (_REAL_HOME / ".ray", _REAL_TMP / "ray"):
        try:
            state[str(folder)] = sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(folder))
        except FileNotFoundError:
            state[str(folder)] = None
    return state


@pytest.fixture(scope="module")
def ray_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayRuntime]:
    reason = ray_unavailable()
    if reason:
        pytest.skip(reason)
    folders = RayFolders(tmp_path_factory.mktemp("ray"))
    folders.make()
    runtime = RayRuntime(folders)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAY_ADDRESS", raising=False)
        env.setenv("RAY_TMPDIR", str(folders.root))
        env.setenv("HOME", str(folders.home))
        env.setenv("TMPDIR", str(folders.tmp))
        # workers import a task's module by name (cloudpickle pickles module-level functions by reference) and are
        # given the driver's cwd and script folder only, not the tests folder pytest put on sys.path
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        try:
            yield runtime
        finally:
            runtime.stop()
    written = outside_ray_state()
    if written != runtime.outside_before:
        pytest.fail(f"Ray wrote outside the test's temp folder: {runtime.outside_before} before, {written} after")


@pytest.fixture
def ray_local(ray_runtime: RayRuntime) -> RaySession:
    """A local Ray instance of 2 CPUs, the driver connected; shared by the module's tests."""
    return ray_runtime.local()


@pytest.fixture
def ray_cluster(ray_runtime: RayRuntime) -> RaySession:
    """A head and one worker node of 1 CPU each, the driver connected; shared by the module's tests."""
    return ray_runtime.cluster()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"ray_local", "ray_cluster", "ray_runtime"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


def record_pid(path: str | os.PathLike[str]) -> int:
    """In a task: append this worker's pid to `path`; the number of pids recorded so far (1 on a first run)."""
    with open(path, "a", encoding="ascii") as file:
        file.write(f"{os.getpid()}\n")
    return len(recorded_pids(path))


def recorded_pids(path: str | os.PathLike[str]) -> list[int]:
    try:
        return [int(line) for line in Path(path).read_text(encoding="ascii").split()]
    except FileNotFoundError:
        return []


def kill_recorded_worker(path: str | os.PathLike[str], run: int = 1, timeout: float = 30.0) -> int:
    """SIGKILL the worker that recorded the `run`-th pid in `path` (`record_pid`), once it has; that pid.

    Returns when the process is gone (or a zombie its raylet has yet to reap), so Ray sees a worker that died
    mid-task and retries the task if its `max_retries` allows.
    """
    step = 0.02
    for _ in range(int(timeout / step) + 1):
        pids = recorded_pids(path)
        if len(pids) >= run:
            break
        time.sleep(step)
    else:
        raise TimeoutError(f"no task recorded run {run} in {path} within {timeout} s")
    pid = pids[run - 1]
    os.kill(pid, signal.SIGKILL)
    for _ in range(int(timeout / step) + 1):
        try:
            state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return pid
        if state == "Z":
            return pid
        time.sleep(step)
    raise TimeoutError(f"worker {pid} was sent SIGKILL and still runs after {timeout} s")


class Dies:
    """A conversion, sent to Ray tasks, that SIGKILLs the worker running it when it meets `interaction_id`: on every
    try, or with a `marker` file only the first time (the file says whether it has), and otherwise converts as the
    built-in one. Here, not in a test module: workers import it by name, and a test module would bring its conftest
    (the Hub server) into every worker."""

    def __init__(self, interaction_id: str, marker: str | os.PathLike[str] | None = None) -> None:
        self.interaction_id, self.marker = interaction_id, None if marker is None else str(marker)

    def __call__(self, interaction: dict) -> Any:
        from personagym_hf.transform.collect import interaction_to_sample

        if interaction.get("interaction_id") == self.interaction_id and self._first_time():
            os.kill(os.getpid(), signal.SIGKILL)
        return interaction_to_sample(interaction)

    def _first_time(self) -> bool:
        if self.marker is None:
            return True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


class NodeLog:
    """A conversion that appends the id of the Ray node converting to `log` once per process (the driver too:
    then its own node), and otherwise converts as the built-in one: on which nodes an export's chunks ran. Each
    conversion takes `delay` seconds more, so that a chunk keeps its node's CPU busy long enough for Ray to send
    the next chunk elsewhere (chunks of a few ms may all run on the first node, and did in 1 of 5 runs)."""

    def __init__(self, log: str | os.PathLike[str], delay: float = 0.0) -> None:
        self.log, self.delay = str(log), delay

    def __call__(self, interaction: dict) -> Any:
        from personagym_hf.transform.collect import interaction_to_sample

        time.sleep(self.delay)

        if os.getpid() not in _LOGGED:
            import ray

            _LOGGED.add(os.getpid())
            with open(self.log, "a", encoding="ascii") as file:
                file.write(ray.get_runtime_context().get_node_id() + "\n")
        return interaction_to_sample(interaction)


_LOGGED: set[int] = set()  # processes that wrote their node id (`NodeLog`)


class ModuleLog:
    """A conversion that appends where this process imported personagym_hf from to `log`, and otherwise converts as
    the built-in one: whether a runtime environment's `py_modules` reached the workers."""

    def __init__(self, log: str | os.PathLike[str]) -> None:
        self.log = str(log)

    def __call__(self, interaction: dict) -> Any:
        import personagym_hf
        from personagym_hf.transform.collect import interaction_to_sample

        with open(self.log, "a", encoding="utf-8") as file:
            file.write(personagym_hf.__file__ + "\n")
        return interaction_to_sample(interaction)
