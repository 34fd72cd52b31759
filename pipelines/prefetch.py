"""Producing items in a background thread ahead of their consumer."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced by a background thread up to `depth` ahead (0: inline). Decoding, resizing
    and torch ops release the GIL, so the collate overlaps the training step. A consumer that stops
    early (an error in the step, `close()`) stops the thread too: it drops what it holds and exits
    (waited for up to 1 s)."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(depth)
    end, stop = object(), threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # re-raised in the consumer
            put(e)

    thread = threading.Thread(target=produce, daemon=True, name="train-batches")
    thread.start()
    try:
        while (item := slots.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # bounded: a producer stuck in the data source (e.g. a streaming split waiting for a dead
        # worker) must not hold up the consumer's error
        thread.join(timeout=1.0)
