"""Killable worker processes: results come back, hung workers are killed at their deadline and
replaced, crashes and errors are reported."""

from __future__ import annotations

import os
import time

import pytest

from glmkit.rl.rewards.workers import DeadlineExceeded, RemoteError, WorkerError, WorkerPool
from glmkit.scoring import Sample
from tests.rl.rewards.fake_verifiers import BusyLoop, Echo, ExitsWorker, Raises, SleepsForever

SAMPLE = Sample("s", "q", "a", category="c", source="src")


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers signal 0; it is dead when /proc says so
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def pool():
    verifiers = {
        "echo": Echo(),
        "sleep": SleepsForever(),
        "spin": BusyLoop(),
        "raise": Raises(),
        "exit": ExitsWorker(),
    }
    p = WorkerPool(verifiers, num_workers=1)
    yield p
    p.close()


def test_scores_in_another_process(pool: WorkerPool) -> None:
    out = pool.run("echo", SAMPLE, "twelve chars", {"turns": 2}, deadline=60)
    assert out.scores == {"echo": 1.0}
    assert out.details["metadata"] == {"turns": 2}
    assert out.details["pid"] != os.getpid() and pool.pids() == [out.details["pid"]]


@pytest.mark.parametrize("name", ["sleep", "spin"])
def test_a_hung_worker_is_killed_at_its_deadline_and_replaced(pool: WorkerPool, name: str) -> None:
    pool.run("echo", SAMPLE, "warm", deadline=60)  # the worker is up: the deadline times the task only
    (old,) = pool.pids()
    start = time.monotonic()
    with pytest.raises(
        DeadlineExceeded, match=rf"{name} did not finish within 0.5 s \(worker {old} killed\)"
    ):
        pool.run(name, SAMPLE, "x", deadline=0.5)
    assert time.monotonic() - start < 5.0
    assert _dead(old) and pool.pids() == []
    out = pool.run("echo", SAMPLE, "after", deadline=60)  # a fresh worker takes the slot
    assert out.scores == {"echo": 0.5} and out.details["pid"] != old


def test_a_raising_verifier_reports_its_exception_and_keeps_the_worker(pool: WorkerPool) -> None:
    pool.run("echo", SAMPLE, "warm", deadline=60)
    before = pool.pids()
    with pytest.raises(RemoteError, match="RuntimeError: verifier exploded"):
        pool.run("raise", SAMPLE, "x", deadline=60)
    assert pool.pids() == before


def test_a_dying_worker_is_reported_and_replaced(pool: WorkerPool) -> None:
    with pytest.raises(WorkerError, match=r"died while scoring \(exit code 3\)"):
        pool.run("exit", SAMPLE, "x", deadline=60)
    assert pool.run("echo", SAMPLE, "ok", deadline=60).scores == {"echo": 0.2}


def test_unknown_name_and_unpicklable_verifiers_are_refused() -> None:
    class Local(Echo):  # defined in a function: cannot be pickled
        pass

    with pytest.raises(ValueError, match=r"process verifiers \['local'\] must pickle"):
        WorkerPool({"local": Local()})
    with pytest.raises(ValueError, match="start_method 'teleport' is not available"):
        WorkerPool({"echo": Echo()}, start_method="teleport")


def test_unknown_task_name(pool: WorkerPool) -> None:
    with pytest.raises(KeyError, match=r"no process verifier 'nope'"):
        pool.run("nope", SAMPLE, "x")
