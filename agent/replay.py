"""``rp-bts flush`` for tracker work: run the pipeline again on the groups the outbox kept.

Only what nobody holds is replayed (a live run's work is its own: issue 11, point 1). What a
tracker refused (a wrong token, a missing project) is kept with the configuration it was
refused with and tried again once that changes; ``rp-bts flush --list``, ``--retry-failed``
and ``--drop`` manage it (issue 12, point 2). Kept work is said in one line per integration,
not one per entry.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from . import kinds
from .config_types import Config
from .hooks import HookManager
from .model import RunResults
from .outbox import SENDING_RENEWAL, Entry, Outbox, settings_digest
from .pipeline import Agent, Options
from .redact import Redactor
from .state import State

log = logging.getLogger("rp_bts_agent")

#: a group whose tracker keeps failing is listed as failed after this many replays
MAX_ATTEMPTS = 20
#: the longest a replay waits for a killed run's last requests to land (seconds)
SETTLE_CAP = 10.0


def flush_trackers(
    config: Config,
    breakers: dict[str, str] | None = None,
    time_budget: float | None = None,
    *,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Replays each kept run; ``breakers`` (integration -> why it is down) is shared by them and
    with the caller, so a tracker that does not answer is asked once, not once per kept run.
    ``time_budget`` bounds each replay (a run's session end; ``rp-bts flush`` has none).
    ``say`` shows a line at once (a wait, before it starts) rather than among those returned."""
    breakers = {} if breakers is None else breakers
    outbox = Outbox(State(config.root).outbox_db)
    if not outbox.path.exists():
        return []
    digests = {i.name: settings_digest(i.settings) for i in config.integrations}
    lines: list[str] = []
    #: (what became of it, integration) -> the errors
    kept: dict[tuple[str, str], list[str]] = defaultdict(list)
    redactor = Redactor(config.secrets())
    with outbox.lease() as lease:
        by_run: dict[str, list[Entry]] = defaultdict(list)
        for entry in outbox.claim(lease.owner, digests):
            by_run[entry.run_id].append(entry)
        lines += _settle(config, by_run, time_budget, say)
        for entries in by_run.values():
            run = RunResults(entries[0].launch, tuple(r for e in entries for r in e.results))
            try:  # the run's own folder: the replay writes and attaches what the run would have
                spool: Path | None = State(config.root).run(entries[0].run_id)
            except ValueError:
                spool = None
            agent = Agent(
                config,
                hooks=HookManager(),
                redactor=redactor,
                options=Options(time_budget=time_budget, spool=spool),
                breakers=breakers,
            )
            report = agent.run(run)
            lines += report.notes
            done = {r.nodeid: r.issues for r in report.run.results}
            for entry in entries:
                refs = [ref for r in entry.results for ref in done.get(r.nodeid, ())]
                bad = [ref for ref in refs if ref.action in ("queued", "failed")]
                if not refs or bad:
                    refused = any(ref.action == "failed" for ref in bad)
                    why = bad[0].error if bad else "not filed"
                    kept[("failed" if refused else "kept", entry.integration)].append(why)
                    continue
                keys = sorted({ref.key for ref in refs if ref.key})
                lines.append(
                    f"{refs[0].action:<9} [{entry.integration}] {', '.join(keys)}"
                    f" ({len(entry.results)} test(s) of run {entry.run_id})"
                )
    outbox.give_up(MAX_ATTEMPTS)
    lines += outbox.notes
    for (what, integration), errors in sorted(kept.items()):
        lines.append(f"{what:<9} [{integration}] {len(errors)} group(s): {errors[0]}")
    return lines + refused_lines(outbox)


def _settle(
    config: Config,
    by_run: dict[str, list[Entry]],
    time_budget: float | None,
    say: Callable[[str], None] | None,
) -> list[str]:
    """A run killed while it was filing may have requests on their way: a tracker commits a
    create it received even if its sender is gone, and a replay that looked before it did would
    file the issue twice. So the replay waits until the last of them would have timed out (the
    integration's ``timeout``, at most :data:`SETTLE_CAP` s after the run last sent). A run end
    waits only while that leaves it half its time budget; else it leaves that run's work to
    ``rp-bts flush`` or a later run."""
    now = time.time()
    waits: dict[str, float] = {}
    for run_id, entries in by_run.items():
        lands = max((_landed_by(config, e) for e in entries), default=0.0)
        if lands > now:
            waits[run_id] = lands - now
    if not waits:
        return []
    wait = max(waits.values())
    if time_budget is not None and wait > time_budget / 2:
        for run_id in waits:
            del by_run[run_id]
        return [
            f"run {run_id} was killed moments ago, its last requests may still be landing:"
            " its work is left for rp-bts flush"
            for run_id in waits
        ]
    what = (
        f" {wait:.1f} s for the last requests of run {', '.join(sorted(waits))}"
        " (killed moments ago) to land before looking its issues up"
    )
    log.info("waiting%s", what)
    if say is not None:
        say("waiting" + what)
    time.sleep(wait)
    return [] if say is not None else ["waited" + what]


def _landed_by(config: Config, entry: Entry) -> float:
    """When every request the entry's killed owner sent has been answered or timed out."""
    integration = config.integration(entry.integration)
    if not entry.last_sent or integration is None or not kinds.get(integration.kind).remote:
        return 0.0
    timeout = min(float(integration.tracker_settings.timeout), SETTLE_CAP)
    return entry.last_sent + SENDING_RENEWAL + timeout


def refused_lines(outbox: Outbox) -> list[str]:
    """One line per integration for the entries a tracker refused or that cannot be read."""
    refused: dict[str, list[Entry]] = defaultdict(list)
    for entry in outbox.entries(None):
        if entry.state in ("failed", "bad"):
            refused[entry.integration].append(entry)
    return [
        f"set aside [{name}] {len(entries)} group(s), last: {entries[-1].error}"
        " (retried once the integration's configuration changes; see rp-bts flush --list)"
        for name, entries in refused.items()
    ]


def list_lines(outbox: Outbox) -> list[str]:
    """``rp-bts flush --list``: every kept entry, with the id ``--drop`` takes."""
    return [
        f"{entry.id:>5}  {entry.state:<8} [{entry.integration}] {entry.fingerprint}"
        f"  run {entry.run_id}  {len(entry.results)} test(s), {entry.attempts} attempt(s)"
        + (f": {entry.error}" if entry.error else "")
        for entry in outbox.entries(None)
    ]
