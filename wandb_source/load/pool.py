"""A bounded pool of per-run jobs whose items come back to one consumer thread (dlt's extract)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DONE = object()  # what `in_parallel` yields as the item when a job has ended


def in_parallel(jobs: Iterable[Any], work: Callable[[Any], Iterator[Any]], max_workers: int,
                buffer: int = 16) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Run `work(job)` for every job on a bounded pool; yield (job, item, None) per item produced,
    then (job, DONE, error or None) when the job ends. Memory is bounded by `buffer` items."""
    jobs = list(jobs)
    results: queue.Queue[Any] = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    def run(job: Any) -> None:
        error = None
        try:
            for item in work(job):
                if stop.is_set():
                    return
                results.put((job, item, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, never swallowed
            error = e
        if not stop.is_set():
            results.put((job, DONE, error))

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="wandb-fetch")
    try:
        for job in jobs:
            pool.submit(run, job)
        remaining = len(jobs)
        while remaining:
            job, item, error = results.get()
            if item is DONE:
                remaining -= 1
            yield job, item, error
    finally:
        stop.set()
        while True:  # unblock producers waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                break
        pool.shutdown(wait=True, cancel_futures=True)


