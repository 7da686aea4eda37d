"""``rp-bts flush``: send what earlier runs could not: tracker work, mails, and what each kind
keeps in its own outbox (Sauce Labs updates). Each step is idempotent and says in one line per
item what happened."""

from __future__ import annotations

from . import kinds
from .config_types import Config


def flush(config: Config, *, trackers: bool = True) -> list[str]:
    """``trackers=False`` leaves tracker work to a caller that replays it with its own
    breakers and time budget (a run's session end)."""
    lines: list[str] = []
    if trackers:
        from .replay import flush_trackers

        lines += flush_trackers(config)
    from .notify import flush_mail

    lines += flush_mail(config)
    for name in dict.fromkeys(i.kind for i in config.integrations):
        flusher = kinds.get(name).flush
        if flusher is not None:
            lines += flusher(config)
    return lines
