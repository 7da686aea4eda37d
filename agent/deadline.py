"""The run end's deadline, for every HTTP call of every kind and every SMTP exchange: a module of
its own, because the launch sets it at every run's end and must not import ``requests`` (nor
``smtplib``) to do so."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "Spent",
    "before_each_send",
    "cap",
    "deadline",
    "left",
    "sending",
    "spent",
    "time_limit",
]

#: ``time.monotonic()`` by which the run end must be over: set by :func:`time_limit` for the
#: launch's end and the pipeline's tasks, read by every session of every kind (the ``jira``
#: library's adopted one and Sauce Labs' included) without being passed through each tracker
_DEADLINE: ContextVar[float | None] = ContextVar("rp_bts_deadline", default=None)
#: called as each HTTP request leaves, in the same way: the outbox lease of the groups being
#: filed is renewed, so it tells when a killed run last sent (see ``outbox.Lease.sending``)
_BEFORE_SEND: ContextVar[Callable[[], None] | None] = ContextVar("rp_bts_send", default=None)


@contextmanager
def time_limit(until: float | None) -> Iterator[None]:
    """Every call made in this context (and in tasks that copy it) ends by ``until``; an
    earlier limit already in force stays."""
    current = _DEADLINE.get()
    if until is None or (current is not None and current <= until):
        yield
        return
    token = _DEADLINE.set(until)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextmanager
def before_each_send(call: Callable[[], None]) -> Iterator[None]:
    """``call()`` runs before every HTTP request made in this context (and in its tasks)."""
    token = _BEFORE_SEND.set(call)
    try:
        yield
    finally:
        _BEFORE_SEND.reset(token)


def sending() -> None:
    """An HTTP request is about to leave."""
    call = _BEFORE_SEND.get()
    if call is not None:
        call()


def deadline() -> float | None:
    """The deadline in force here, if any."""
    return _DEADLINE.get()


def left() -> float | None:
    """Seconds left before the deadline in force (None: no limit)."""
    until = _DEADLINE.get()
    return None if until is None else until - time.monotonic()


def spent() -> bool:
    """A deadline is in force and has passed: what is left waits for ``rp-bts flush``."""
    remaining = left()
    return remaining is not None and remaining <= 0


class Spent(TimeoutError):
    """No wait starts once the run end's time budget is spent."""


def cap(timeout: float, until: float | None = None) -> float:
    """``timeout`` cut to the time left before the deadline in force (and before ``until``, a
    caller's own); :class:`Spent` when none is left. Every wait on a network goes through it."""
    limits = [d for d in (until, _DEADLINE.get()) if d is not None]
    if not limits:
        return timeout
    remaining = min(limits) - time.monotonic()
    if remaining <= 0:
        raise Spent("the time budget is spent")
    return min(timeout, remaining)
