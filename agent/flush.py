"""``rp-bts flush``: send what an earlier run could not (mail, Sauce Labs updates, ...).

Each kind that can leave work behind registers one function here; it sends what is pending,
idempotently, and says in one line per item what happened.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from typing import Final

from .config_types import Config

Flusher = Callable[[Config], list[str]]

#: name -> "module:function" taking the resolved config and returning one line per item handled.
_FLUSHERS: Final[dict[str, str]] = {
    "trackers": "rp_bts_agent.replay:flush_trackers",
    "mail": "rp_bts_agent.smtp:flush_pending",
    "sauce": "rp_bts_agent.sauce:flush_pending",
}


def flush(config: Config, *, skip: Collection[str] = ()) -> list[str]:
    """``skip`` names kinds (keys of ``_FLUSHERS``) whose work stays pending this time."""
    lines: list[str] = []
    for name, target in _FLUSHERS.items():
        if name in skip:
            continue
        module_name, _, attr = target.partition(":")
        flusher: Flusher = getattr(importlib.import_module(module_name), attr)
        lines += flusher(config)
    return lines
