"""Killable worker processes with hard deadlines, for CPU-heavy verifiers.

``asyncio`` cannot cancel CPU-bound code and a thread cannot be killed, so a verifier that may
hang (a sympy simplification, a page render, a regular expression gone exponential) runs in a
worker process. :class:`WorkerPool` keeps ``num_workers`` of them; a task that runs past its
deadline gets its worker killed (with its whole process group, so subprocesses the verifier
started die too) and a fresh worker takes the slot on its next task. Pitfall 4 of
``reference/anchors_rl.md``: verl's and slime's reward paths hung on exactly this.

The verifiers are pickled once per worker when it starts, not once per task. This module imports
only the standard library and :mod:`glmkit.scoring`, so a worker starts without importing torch
unless its verifiers need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import os
import pickle
import queue
import signal
import time
import traceback
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from glmkit.scoring import Sample, Scores, Verifier


class WorkerError(RuntimeError):
    """A worker process could not be started or died while scoring."""


class DeadlineExceeded(TimeoutError):
    """A task ran past its deadline; its worker was killed."""


class RemoteError(RuntimeError):
    """The verifier raised inside the worker; the message holds its exception and traceback."""


def _worker_main(conn: Connection, payload: bytes) -> None:
    """Worker loop: unpickle the verifiers, then score tasks until told to stop."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # its own process group: killing the group takes the verifier's children too
    try:
        verifiers: dict[str, Verifier] = pickle.loads(payload)
    except BaseException as exc:
        conn.send(("startup_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        name, sample, response, metadata = task
        try:
            reply: tuple[Any, ...] = ("ok", verifiers[name].score(sample, response, metadata))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8))
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result
            conn.send(("error", f"result not picklable: {type(exc).__name__}: {exc}", ""))


def _kill(proc: Any) -> None:
    """SIGKILL a worker and its process group, then reap it."""
    if proc.is_alive():
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # only a group the worker leads (see _worker_main)
        except (AttributeError, OSError):
            with contextlib.suppress(OSError):
                proc.kill()
    proc.join(5)


class _Worker:
    """One slot of the pool: a process started on demand, and its pipe."""

    def __init__(self, ctx: Any, payload: bytes, startup_timeout: float) -> None:
        self.ctx = ctx
        self.payload = payload
        self.startup_timeout = startup_timeout
        self.proc: Any = None
        self.conn: Connection | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=_worker_main, args=(child, self.payload), daemon=True, name="glmkit-reward-worker"
        )
        try:
            proc.start()
        except Exception as exc:
            parent.close()
            raise WorkerError(f"cannot start a reward worker: {type(exc).__name__}: {exc}") from exc
        finally:
            child.close()
        self.proc, self.conn = proc, parent
        try:
            ready = parent.poll(self.startup_timeout)
            msg = parent.recv() if ready else None
        except (EOFError, OSError):
            msg = ("startup_error", f"the worker exited during startup (exit code {proc.exitcode})")
        if msg is None:
            self.stop(kill=True)
            raise WorkerError(f"the reward worker did not start within {self.startup_timeout:g} s")
        if msg[0] != "ready":
            self.stop(kill=True)
            raise WorkerError(f"the reward worker failed to start: {msg[1]}")

    def stop(self, kill: bool = False) -> None:
        proc, conn = self.proc, self.conn
        self.proc, self.conn = None, None
        if proc is None:
            return
        if not kill and conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(1)
        _kill(proc)
        if conn is not None:
            conn.close()

    def call(
        self, name: str, sample: Sample, response: str, metadata: Mapping[str, Any] | None, deadline: float
    ) -> Scores:
        if not self.alive:
            self.stop(kill=True)  # reap a dead one
            self.start()
        assert self.conn is not None and self.proc is not None
        task = (name, sample, response, dict(metadata) if metadata is not None else None)
        try:
            self.conn.send(task)  # pickles fully before writing: a bad task leaves the pipe clean
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise RemoteError(f"cannot send the task to the worker: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            self.stop(kill=True)
            raise WorkerError(f"the reward worker died before the task ({exc})") from exc
        pid = self.proc.pid
        if not self.conn.poll(deadline):
            self.stop(kill=True)
            raise DeadlineExceeded(f"{name} did not finish within {deadline:g} s (worker {pid} killed)")
        try:
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.proc.join(1)  # reap it, to report how it ended
            code = self.proc.exitcode
            self.stop(kill=True)
            raise WorkerError(f"the reward worker {pid} died while scoring (exit code {code})") from exc
        if reply[0] == "ok":
            return reply[1]
        raise RemoteError(reply[1] + (f"\n{reply[2]}" if reply[2] else ""))


def _shutdown(workers: list[_Worker], executor: ThreadPoolExecutor) -> None:
    for worker in workers:
        worker.stop(kill=True)
    executor.shutdown(wait=False, cancel_futures=True)


class WorkerPool:
    """``num_workers`` killable processes that score with the given verifiers under deadlines.

    Args:
        verifiers: ``{name: verifier}``; each must pickle (checked here).
        num_workers: processes (started on first use, each once its slot is needed).
        start_method: ``multiprocessing`` start method; default ``forkserver`` where available
            (safe in a process with threads, and fast to replace a killed worker), else ``spawn``.
        startup_timeout: seconds a new worker may take to import and unpickle its verifiers.
    """

    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        num_workers: int = 2,
        start_method: str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        methods = mp.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in methods:
            raise ValueError(
                f"start_method {start_method!r} is not available here; valid: {', '.join(methods)}"
            )
        try:
            payload = pickle.dumps(dict(verifiers))
        except Exception as exc:
            raise ValueError(
                f"process verifiers {sorted(verifiers)} must pickle to run in worker processes: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.names = frozenset(verifiers)
        self.num_workers = num_workers
        self.start_method = start_method
        ctx = mp.get_context(start_method)
        self._workers = [_Worker(ctx, payload, startup_timeout) for _ in range(num_workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)
        self._executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="glmkit-reward-pool")
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._executor)

    def run(
        self,
        name: str,
        sample: Sample,
        response: str,
        metadata: Mapping[str, Any] | None = None,
        deadline: float = 30.0,
    ) -> Scores:
        """Score in a worker (waiting for a free one); the deadline counts from when it starts.

        Raises:
            DeadlineExceeded: the verifier ran past ``deadline`` seconds (its worker was killed).
            RemoteError: the verifier raised.
            WorkerError: no worker could be started, or it died.
        """
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        if name not in self.names:
            raise KeyError(f"no process verifier {name!r}; the pool has {sorted(self.names)}")
        worker = self._idle.get()
        try:
            return worker.call(name, sample, response, metadata, deadline)
        finally:
            self._idle.put(worker)

    async def arun(
        self,
        name: str,
        sample: Sample,
        response: str,
        metadata: Mapping[str, Any] | None = None,
        deadline: float = 30.0,
    ) -> Scores:
        """:meth:`run` without blocking the event loop (a pool thread waits on the worker)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.run, name, sample, response, metadata, deadline)
        return await loop.run_in_executor(self._executor, call)

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.proc.pid for w in self._workers if w.alive]

    def close(self) -> None:
        """Stop every worker (a busy one is killed)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + 2.0
        for _ in self._workers:  # idle ones stop cleanly; a busy one is killed by the finalizer
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            worker.stop(kill=False)
        self._finalizer()
