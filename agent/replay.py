"""``rp-bts flush`` for tracker work: run the pipeline again on the groups the outbox kept."""

from __future__ import annotations

from collections import defaultdict

from .config_types import Config
from .hooks import HookManager
from .model import RunResults
from .outbox import Entry, Outbox
from .pipeline import Agent, Options
from .redact import Redactor
from .state import State

#: a group whose tracker keeps refusing is listed as failed after this many replays
MAX_ATTEMPTS = 20


def flush_trackers(
    config: Config, breakers: dict[str, str] | None = None, time_budget: float | None = None
) -> list[str]:
    """Replays each kept run; ``breakers`` (integration -> why it is down) is shared by them and
    with the caller, so a tracker that does not answer is asked once, not once per kept run.
    ``time_budget`` bounds each replay (a run's session end; ``rp-bts flush`` has none)."""
    breakers = {} if breakers is None else breakers
    outbox = Outbox(State(config.root).outbox_db)
    given_up = outbox.entries("failed")
    by_run: dict[str, list[Entry]] = defaultdict(list)
    for entry in outbox.entries():
        by_run[entry.run_id].append(entry)
    lines: list[str] = []
    redactor = Redactor(config.secrets())
    for entries in by_run.values():
        run = RunResults(entries[0].launch, tuple(r for e in entries for r in e.results))
        agent = Agent(
            config,
            hooks=HookManager(),
            redactor=redactor,
            options=Options(keep_in_outbox=False, time_budget=time_budget),
            breakers=breakers,
        )
        done = {r.nodeid: r.issues for r in agent.run(run).run.results}
        for entry in entries:
            refs = [ref for r in entry.results for ref in done.get(r.nodeid, ())]
            bad = [ref for ref in refs if ref.action in ("queued", "failed")]
            if not bad:
                keys = sorted({ref.key for ref in refs if ref.key})
                outbox.settle(entry, "done")
                lines.append(
                    f"{refs[0].action:<9} [{entry.integration}] {', '.join(keys)}"
                    f" ({len(entry.results)} test(s) of run {entry.run_id})"
                )
            elif all(ref.action == "queued" for ref in bad) and entry.attempts + 1 < MAX_ATTEMPTS:
                outbox.settle(entry, "pending", bad[0].error)
                lines.append(f"kept      [{entry.integration}] {bad[0].error}")
            else:
                outbox.settle(entry, "failed", bad[0].error)
                lines.append(
                    f"failed    [{entry.integration}] {bad[0].error} (listed, not retried)"
                )
    for entry in given_up:
        lines.append(f"failed    [{entry.integration}] run {entry.run_id}: {entry.error}")
    return lines
