"""What the protocol test servers (Jira, Rally, Clarity) share: seeded random faults, a threaded
server on 127.0.0.1 that stays quiet about clients that gave up, and a handler that counts the
requests being answered, so a test can wait until what a killed client sent has landed.

A server's state needs ``lock``, ``busy`` (0 at first) and ``base_url``; its handler subclasses
:class:`Handler` and implements ``_serve``.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar

import pytest


class _Running(Protocol):
    @property
    def state(self) -> Any: ...


R = TypeVar("R", bound=_Running)


@dataclass
class Faults:
    """Random trouble, seeded so a failing run can be replayed: each REST call draws once.

    ``drop`` and ``slow`` act after the server has done the work (the client never learns that
    its create went through), ``error`` and ``throttle`` before it (nothing happened).
    """

    seed: int = 0
    error: float = 0.0  # 500, nothing done
    throttle: float = 0.0  # 429 with Retry-After, nothing done
    drop: float = 0.0  # done, then the connection closes without an answer
    slow: float = 0.0  # done, answered after ``slow_seconds`` (longer than the client waits)
    slow_seconds: float = 3.0
    retry_after: str = "1"
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str:
        with self._lock:
            roll = self._rng.random()
            for kind in ("error", "throttle", "drop", "slow"):
                rate: float = getattr(self, kind)
                if roll < rate:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    return kind
                roll -= rate
            return ""


class Handler(BaseHTTPRequestHandler):
    """One request: counted in ``state.busy`` while ``_serve`` answers it."""

    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        raise NotImplementedError

    def _counted(self) -> None:
        state = self.server.state
        with state.lock:
            state.busy += 1
        try:
            self._serve()
        finally:
            with state.lock:
                state.busy -= 1

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _counted


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: Any, handler: type[Handler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.state = state
        state.base_url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout, a fault injected, a killed run) is expected."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def wait_idle(state: Any, limit: float = 30.0) -> None:
    """Until no request is being answered: what a killed client sent has landed."""
    until = time.monotonic() + limit
    while state.busy and time.monotonic() < until:
        time.sleep(0.01)
    assert not state.busy, "requests still being answered"


def serve(server: Server) -> None:
    """Answer requests in a thread of their own until ``server.shutdown()``."""
    polling = {"poll_interval": 0.05}
    threading.Thread(target=server.serve_forever, kwargs=polling, daemon=True).start()


def one_server(
    start: Callable[..., R], stop: Callable[[R], None], what: str, *args: Any
) -> Iterator[R]:
    """A fixture's fresh server; the test fails if any request broke ``what``'s contract."""
    running = start(*args)
    yield running
    stop(running)
    if running.state.violations:
        pytest.fail(f"{what} contract violations:\n" + "\n".join(running.state.violations))


def server_factory(
    start: Callable[..., R], stop: Callable[[R], None], what: str
) -> Iterator[Callable[..., R]]:
    """A fixture's factory of servers with switches, each checked as :func:`one_server` does."""
    started: list[R] = []

    def factory(*args: Any, **switches: Any) -> R:
        running = start(*args, **switches)
        started.append(running)
        return running

    yield factory
    violations = []
    for running in started:
        stop(running)
        violations += running.state.violations
    if violations:
        pytest.fail(f"{what} contract violations:\n" + "\n".join(violations))
