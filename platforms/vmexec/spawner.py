"""The vmexec platform's spawner: one long-lived thread that runs jobs in
order (spawning stubs, recycling them).

It exists because PR_SET_PDEATHSIG fires when the *thread* that forked a
stub ends, so stubs must be forked by a thread that lives as long as the
platform; and it keeps that work off the guest threads' paths. (Not
concurrent.futures: importing it costs the Sentry's start-up ~9 ms.)
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from platforms.base import PlatformError


class Job:
    """A submitted call; ``result()`` waits for it and returns or raises."""

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self._fn, self._args = fn, args
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except BaseException as e:  # handed to whoever waits for it
            self._error = e
        finally:
            self._done.set()

    def result(self) -> Any:
        """The call's return value; what it raised, a host error (OSError:
        out of fds, say) as the PlatformError it is for the Sentry."""
        self._done.wait()
        if isinstance(self._error, OSError):
            raise PlatformError(f"vmexec: {self._error}") from self._error
        if self._error is not None:
            raise self._error
        return self._result


class Spawner:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False  # guarded by _lock
        # A daemon: at interpreter exit it just stops, and its stubs die with it.
        self._thread = threading.Thread(target=self._run, name="vmexec-spawner", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Queue fn(*args). Raises PlatformError after shutdown()."""
        job = Job(fn, args)
        with self._lock:
            if self._closed:
                raise PlatformError("vmexec: platform used after close")
            self._jobs.put(job)
        return job

    def shutdown(self) -> None:
        """Run what is queued, then end the thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()
