"""Live events of the running jobs, for the WebSocket and streaming endpoints.

The runner thread publishes each engine event with :meth:`EventHub.publish` (the JSON object ``run --json``
prints); readers in other threads wait for new ones with :meth:`EventHub.wait`. A job's events stay
here while it runs and a little after; the queue keeps them for good once the job ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque

#: Finished jobs whose events stay in memory (readers that were a little late still find them).
KEEP_FINISHED = 64
#: Events kept for the all-jobs stream.
KEEP_ALL = 10_000


class EventHub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, list[dict]] = OrderedDict()
        self._finished: set[str] = set()
        self._all: deque[tuple[int, dict]] = deque(maxlen=KEEP_ALL)
        self._seq = 0

    def start(self, job_id: str) -> None:
        with self._cond:
            self._jobs[job_id] = []
            self._finished.discard(job_id)
            self._cond.notify_all()

    def publish(self, job_id: str, event: dict) -> None:
        with self._cond:
            self._jobs.setdefault(job_id, []).append(event)
            self._seq += 1
            self._all.append((self._seq, {**event, "job_id": job_id}))
            self._cond.notify_all()

    def events(self, job_id: str) -> list[dict]:
        with self._cond:
            return list(self._jobs.get(job_id, []))

    def finish(self, job_id: str) -> None:
        """Mark the job's stream ended."""
        with self._cond:
            self._finished.add(job_id)
            done = [j for j in self._jobs if j in self._finished]
            for old in done[:-KEEP_FINISHED]:
                self._jobs.pop(old, None)
                self._finished.discard(old)
            self._cond.notify_all()

    def known(self, job_id: str) -> bool:
        with self._cond:
            return job_id in self._jobs

    def wait(self, job_id: str, index: int, timeout: float) -> tuple[list[dict], bool]:
        """Events of ``job_id`` from ``index`` on (waiting up to ``timeout`` for some), and whether
        the job's stream has ended."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._jobs.get(job_id, ())) > index or job_id in self._finished,
                                timeout)
            return list(self._jobs.get(job_id, [])[index:]), job_id in self._finished

    def wait_all(self, after: int, timeout: float) -> tuple[list[dict], int]:
        """Events of every job with a sequence number above ``after``, and the last number."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after, timeout)
            return [e for s, e in self._all if s > after], self._seq

    @property
    def held(self) -> int:
        """How many jobs' events are in memory (bounded: the running one and KEEP_FINISHED more)."""
        with self._cond:
            return len(self._jobs)

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq


class EndWaiters:
    """Requests waiting for a job to end (the long-poll ``GET /jobs/{id}?wait=S``), woken from the
    runner thread through their event loop: no polling, no thread held per waiter. The runner
    hands over the job as recorded, so a woken request answers without reading it back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, list[asyncio.Future]] = {}

    def ended(self, job_id: str, job: dict | None = None) -> None:
        """A job's end is recorded (any thread); ``job``: its record (what the queue returns)."""
        with self._lock:
            waiting = self._futures.pop(job_id, [])
        for fut in waiting:
            loop = fut.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut, job)

    def register(self, job_id: str, timeout: float | None = None) -> asyncio.Future:
        """Call on the event loop before reading the job's status, then await the future (its
        result: the job's record, or None; None also once ``timeout`` seconds have passed): an
        end recorded after the read wakes it."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if timeout is not None:
            timer = loop.call_later(timeout, _resolve, fut, None)
            fut.add_done_callback(lambda _fut: timer.cancel())
        with self._lock:
            self._futures.setdefault(job_id, []).append(fut)
        return fut

    def forget(self, job_id: str, fut: asyncio.Future) -> None:
        with self._lock:
            waiting = self._futures.get(job_id)
            if waiting and fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    del self._futures[job_id]

    @property
    def waiting(self) -> int:
        """How many requests wait (bounded by the open requests)."""
        with self._lock:
            return sum(len(v) for v in self._futures.values())


def _resolve(fut: asyncio.Future, job: dict | None) -> None:
    if not fut.done():
        fut.set_result(job)
