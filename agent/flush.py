"""``rp-bts flush``: send what earlier runs could not: tracker work, mails, and what each kind
keeps in its own outbox (Sauce Labs updates). Each step is idempotent and says in one line per
item what happened."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from . import kinds
from .config_types import Config
from .redact import Redactor

log = logging.getLogger("rp_bts_agent")


def flush(
    config: Config, *, trackers: bool = True, say: Callable[[str], None] | None = None
) -> list[str]:
    """``trackers=False`` leaves tracker work to a caller that replays it with its own
    breakers and time budget (a run's session end); ``say`` shows a wait as it starts. Each
    step is contained: one that fails is a ``failed`` line, and the others still go (issue 11,
    point 5)."""
    steps: list[tuple[str, Callable[[Config], list[str]]]] = []
    if trackers:
        from .replay import flush_trackers

        steps.append(("tracker work", functools.partial(flush_trackers, say=say)))
    from .notify import flush_mail

    steps.append(("mail", flush_mail))
    for name in dict.fromkeys(i.kind for i in config.integrations):
        flusher = kinds.get(name).flush
        if flusher is not None:
            steps.append((name, flusher))
    lines: list[str] = []
    for what, step in steps:
        try:
            lines += step(config)
        except Exception as exc:  # the rest still goes; the work stays kept
            log.exception("rp-bts: flushing %s failed", what)
            lines.append(f"failed    {what}: {Redactor(config.secrets()).redact(repr(exc))}")
    return lines
