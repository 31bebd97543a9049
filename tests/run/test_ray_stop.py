"""How a Ray export that stops leaves no task running, without racing Ray: the runner's own calls, on a stand-in
for the `ray` module (no Ray needed). Cancelling a task as it finishes can abort the driver in Ray's core worker
("Tried to complete task that was not pending", ray-project/ray#54798: the full suite hit it once), so a failed
export lets its tasks in flight finish first, for `STOP_WAIT` at most, and cancels only what is still running."""

import pytest

from personagym_hf.config import RunOptions
from personagym_hf.run import ray_runner
from personagym_hf.run.ray_runner import RayRunner
from personagym_hf.transform.policy import BadInputError


class StandInRay:
    """`ray.wait` and `ray.cancel` over named refs: `done` have finished, `finishing` finish within a wait of any
    length, the others never do."""

    def __init__(self, done: set[str], finishing: set[str]):
        self.done, self.finishing = set(done), set(finishing)
        self.calls: list[tuple] = []

    def wait(self, refs, num_returns=1, timeout=None, fetch_local=True):
        self.calls.append(("wait", list(refs), timeout))
        if timeout:
            self.done |= self.finishing & set(refs)
        ready = [ref for ref in refs if ref in self.done]
        return ready, [ref for ref in refs if ref not in self.done]

    def cancel(self, ref, force=False):
        self.calls.append(("cancel", ref, force))


def runner_with(ray: StandInRay, refs: list[str]) -> RayRunner:
    runner = RayRunner(RunOptions(engine="ray"))
    runner.ray, runner.connected, runner.refs = ray, False, list(refs)
    return runner


def test_a_failed_export_lets_its_tasks_finish_and_cancels_only_those_still_running():
    ray = StandInRay(done={"finished"}, finishing={"finishing"})
    runner = runner_with(ray, ["finished", "finishing", "stuck"])
    runner.__exit__(BadInputError, BadInputError("bad record"), None)
    long_waits = [call for call in ray.calls if call[0] == "wait" and call[2]]
    assert long_waits == [("wait", ["finishing", "stuck"], ray_runner.STOP_WAIT)]
    assert [call for call in ray.calls if call[0] == "cancel"] == [("cancel", "stuck", True)]
    assert runner.refs == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_export_cancels_its_running_tasks_at_once(interrupt):
    ray = StandInRay(done={"finished"}, finishing={"finishing"})
    runner = runner_with(ray, ["finished", "finishing", "stuck"])
    runner.__exit__(interrupt, interrupt(), None)
    assert not [call for call in ray.calls if call[0] == "wait" and call[2]]  # only probes: timeout=0
    cancelled = [call for call in ray.calls if call[0] == "cancel"]
    assert cancelled == [("cancel", "finishing", True), ("cancel", "stuck", True)]


def test_a_finished_export_cancels_nothing():
    ray = StandInRay(done={"a", "b"}, finishing=set())
    runner = runner_with(ray, ["a", "b"])
    runner.__exit__(None, None, None)
    assert [call[0] for call in ray.calls] == ["wait", "wait"]  # a probe of each, no cancel
