"""``rp-bts flush``: send what an earlier run could not (mail, Sauce Labs updates, ...).

Each kind that can leave work behind registers one function here; it sends what is pending,
idempotently, and says in one line per item what happened.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from .config_types import Config

Flusher = Callable[[Config], list[str]]

#: name -> "module:function" taking the resolved config and returning one line per item handled.
_FLUSHERS: Final[dict[str, str]] = {
    "trackers": "rp_bts_agent.replay:flush_trackers",
    "mail": "rp_bts_agent.smtp:flush_pending",
    "sauce": "rp_bts_agent.sauce:flush_pending",
}


def flush(config: Config) -> list[str]:
    lines: list[str] = []
    for target in _FLUSHERS.values():
        module_name, _, attr = target.partition(":")
        flusher: Flusher = getattr(importlib.import_module(module_name), attr)
        lines += flusher(config)
    return lines
