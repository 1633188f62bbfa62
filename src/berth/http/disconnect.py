"""Stop a handler's work when its client goes away.

Starlette does not cancel a handler when the client disconnects. After the body has
been read, the next ASGI message a request can receive is ``http.disconnect``, so a
small watcher waits for it and cancels the handler's task. Cancelling the handler
cancels its pending Engine future, and the batcher drops cancelled requests before
they reach the model. Only use this once the body has been read completely.

The watcher is a task, and most requests are answered in well under a millisecond, so
it is started only for work still pending after ``WATCH_AFTER_S``: pending requests sit
in a per-loop watch list that one timer sweeps every ``WATCH_AFTER_S``, and a request
still waiting at its second sweep gets its watcher. A request answered soon costs a
dict entry put and deleted, not a timer of its own.

A request served by a :class:`~berth.http.lean_cycle.LeanCycle` (the inference routes)
needs none of that: berth's HTTP protocol tells its cycle when the connection is lost,
and the cycle cancels the task awaiting the work.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Awaitable, TypeVar

from starlette.types import Receive

from .lean_cycle import LeanCycle

T = TypeVar("T")

WATCH_AFTER_S = 0.002


class ClientDisconnected(Exception):
    pass


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away. Every ASGI message up to then is dropped,
    so only await this after the request body has been read."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _cancel_when_gone(receive: Receive, task: asyncio.Task[object]) -> None:
    await wait_for_disconnect(receive)
    task.cancel()


class _WatchList:
    """The requests of one event loop that await work, and their watchers.

    A waiting request is a ``task -> receive`` entry in ``young``, the dict of requests
    that started waiting since the last sweep. A sweep makes ``young`` the ``old`` dict
    and gives a watcher to each request still in the previous ``old``. A request that
    stops waiting deletes its entry from the dict it was put in, whichever role that
    dict has by then (or none), so the hot path never asks which."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.young: dict[asyncio.Task[object], Receive] = {}
        self._old: dict[asyncio.Task[object], Receive] = {}
        self.watchers: dict[asyncio.Task[object], asyncio.Future[None]] = {}
        self.sweeping = False

    def start_sweeping(self) -> None:
        self.sweeping = True
        self.loop.call_later(WATCH_AFTER_S, self._sweep)

    def stop_watching(self, task: asyncio.Task[object]) -> None:
        watcher = self.watchers.pop(task, None)
        if watcher is not None:
            watcher.cancel()

    def _sweep(self) -> None:
        for task, receive in self._old.items():  # waiting for at least one full period
            self.watchers[task] = asyncio.ensure_future(_cancel_when_gone(receive, task))
        self._old, self.young = self.young, {}
        if self._old:
            self.loop.call_later(WATCH_AFTER_S, self._sweep)
        else:
            self.sweeping = False


async def _cancel_on_lost_connection(cycle: LeanCycle, work: Awaitable[T]) -> T:
    """:func:`cancel_on_disconnect` for a request on a lean cycle, which hears of a lost
    connection from the protocol itself: no watcher task, no sweeps."""
    if cycle.disconnected:  # gone already: the work never starts
        if isinstance(work, asyncio.Future):
            work.cancel()
        elif asyncio.iscoroutine(work):
            work.close()
        raise ClientDisconnected()
    task = cycle.watcher = asyncio.current_task()
    try:
        return await work
    except asyncio.CancelledError:
        if cycle.gone_while_watched:
            task.uncancel()  # type: ignore[union-attr]
            raise ClientDisconnected() from None
        raise
    finally:
        cycle.watcher = None


_watch_lists: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WatchList] = weakref.WeakKeyDictionary()
_last: list[_WatchList | None] = [None]  # the list of the loop used last: one server, one loop


def _watch_list() -> _WatchList:
    loop = asyncio.get_running_loop()
    last = _last[0]
    if last is not None and last.loop is loop:
        return last
    watch_list = _watch_lists.get(loop)
    if watch_list is None:
        watch_list = _watch_lists[loop] = _WatchList(loop)
    _last[0] = watch_list
    return watch_list


def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> Awaitable[T]:
    """Await ``work``; if the client disconnects first, cancel it and raise
    :class:`ClientDisconnected`. ``receive`` is the request's ASGI receive callable.
    A task awaits one such call at a time. (A plain function handing back what to
    await: no coroutine frame of its own on every request.)"""
    if isinstance(work, asyncio.Future) and work.done():
        return work  # answered already (a request run at once): nothing to watch
    cycle = getattr(receive, "__self__", None)
    if cycle.__class__ is LeanCycle:
        return _cancel_on_lost_connection(cycle, work)  # type: ignore[arg-type]
    return _watched(receive, work)


async def _watched(receive: Receive, work: Awaitable[T]) -> T:
    """:func:`cancel_on_disconnect` through the loop's watch list."""
    task = asyncio.current_task()
    assert task is not None
    watch_list = _watch_list()
    waiting = watch_list.young
    waiting[task] = receive
    if not watch_list.sweeping:
        watch_list.start_sweeping()
    try:
        return await work
    except asyncio.CancelledError:
        watcher = watch_list.watchers.get(task)
        if watcher is not None and watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        del waiting[task]
        if watch_list.watchers:
            watch_list.stop_watching(task)
