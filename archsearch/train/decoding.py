"""Image decoding for the data store (``data``): one image at a time inline, or in a pool of worker processes
that Ctrl-C (and, under the CLI, SIGTERM) stops at any moment: while it forks, decodes or finishes."""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

POOL_MIN_TASKS = 64  # fewer images decode inline: starting workers would cost more than it saves
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def decode(task: tuple[str, int]) -> tuple[np.ndarray | None, str]:
    """One image as ``[r, r, 3]`` uint8 (shorter side to ``r``, centre crop), or the reason it failed."""
    path, size = task
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2..1/8 where it can
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            im = im.resize((size, size), Image.Resampling.BILINEAR, box=box)
            return np.asarray(im, dtype=np.uint8), ""
    except Exception as err:  # noqa: BLE001 -- PIL raises many types for corrupt files: any means "skip it"
        return None, f"{type(err).__name__}: {err}"


_stop: ctypes.c_bool | None = None  # in a pool worker: set by the parent when its decode is interrupted


def _start_worker(stop: ctypes.c_bool | None) -> None:
    """Pool workers leave Ctrl-C to the parent (no traceback from each of them) and die at once on SIGTERM
    rather than run the handler they inherit from the CLI (``cli.common.sigterm_as_interrupt``); they skip
    their remaining tasks once the parent sets ``stop``."""
    global _stop
    _stop = stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_unless_stopped(task: tuple[str, int]) -> tuple[np.ndarray | None, str]:
    """``decode``, until the parent stops the pool: then an interrupted decode ends after the images in hand."""
    if _stop is not None and _stop.value:
        return None, "stopped"
    return decode(task)


@contextmanager
def _signals_held() -> Iterator[dict[int, Callable]]:
    """Record SIGINT and SIGTERM instead of acting on them; yields ``{signal: its handler}`` of those received.

    While a pool forks its workers, a signal's handler may run inside ``os.fork``'s at-fork hooks (logging
    registers two), where CPython reports the KeyboardInterrupt it raises as unraisable and drops it: the run
    carried on. Raised inside ``Pool.__init__`` instead, it left a half-built pool whose worker handler forked
    workers that outlived the run. Only handlers set in Python are held (SIG_DFL and SIG_IGN act as before),
    and only in the main thread, the one that runs them. A worker forked meanwhile inherits the holding
    handler until its initializer runs: there it ignores SIGINT and dies of SIGTERM, as afterwards.
    """
    received: dict[int, Callable] = {}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    owner = os.getpid()
    handlers = {s: h for s in HELD_SIGNALS if callable(h := signal.getsignal(s))}

    def hold(signum: int, frame: object) -> None:
        if os.getpid() == owner:
            received[signum] = handlers[signum]
        elif signum == signal.SIGTERM:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in handlers:
        signal.signal(signum, hold)
    try:
        yield received
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _replay(received: dict[int, Callable]) -> None:
    """Run the handlers of the signals ``_signals_held`` received: KeyboardInterrupt, as a rule."""
    for signum, handler in received.items():
        handler(signum, None)


def decoding_pool(workers: int, stop: ctypes.c_bool | None = None) -> multiprocessing.pool.Pool:
    """A pool of ``workers`` processes for image decoding that skip their tasks once ``stop`` is set. Fork
    where the platform has it: the workers only run PIL, and start at once instead of re-importing torch. A
    signal that lands while it starts is acted on once it is whole, closed and joined (``_signals_held``)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with _signals_held() as received:
        pool = multiprocessing.get_context(method).Pool(workers, initializer=_start_worker, initargs=(stop,))
    if received:
        pool.close()  # no task given: the workers take their end-of-work sentinel and exit
        pool.join()
        _replay(received)
    return pool


def decoded(tasks: list[tuple[str, int]], workers: int) -> Iterator[tuple[np.ndarray | None, str]]:
    """``decode`` of each task, in order: inline for one worker or few tasks, else in a ``decoding_pool``.
    The caller must run it to its end for the pool to close and join (``data._build`` does)."""
    if workers <= 1 or len(tasks) < POOL_MIN_TASKS:
        yield from map(decode, tasks)
        return
    # Done or interrupted, the pool ends with close and join: the workers take their end-of-work sentinel and
    # exit (interrupted, after skipping their remaining tasks). Never terminate(): it SIGTERMs the workers,
    # and one killed inside its result queue's put() leaves that queue's write lock held, on which the pool's
    # task handler, and so terminate(), then wait for ever (2 of 40 Ctrl-Cs in the middle of a decode hung).
    stop = multiprocessing.RawValue(ctypes.c_bool, False)
    pool = decoding_pool(workers, stop)
    try:
        yield from pool.imap(_decode_unless_stopped, tasks, chunksize=32)
    except BaseException:
        stop.value = True
        with _signals_held() as received:  # a second Ctrl-C does not cut the stop short, nor is it lost
            pool.close()
            pool.join()
        _replay(received)
        raise
    pool.close()
    pool.join()
