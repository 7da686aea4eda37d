"""``rp-bts sync [--once] [--refresh-fields]`` and ``rp-bts sync log [--json]``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from . import sync
from ._cli_common import load, project_root
from .known import KnownStore
from .redact import Redactor
from .state import State

__all__ = ["add_parser"]


def cmd_sync(args: argparse.Namespace) -> int:
    """Pull, push and refresh every period until Ctrl-C, or once (cron, CI): 1 when a step
    failed in a single round."""
    config = load(args)
    state = State(config.root)
    context = sync.SyncContext(
        config, KnownStore(state.known_db), once=args.once, refresh_fields=args.refresh_fields
    )
    stop = sync.Stop()

    def report(entry: sync.SyncEntry) -> None:
        for line in entry.describe():
            print(line, flush=True)

    with stop.on_interrupt():
        entries = sync.run(
            context,
            log=sync.SyncLog(state.sync_log),
            redactor=Redactor(config.secrets()),
            report=report,
            stop=stop,
        )
    if not entries:
        print("nothing to sync: no integration has a sync, and no run linked issues")
    if stop.is_set():
        print("sync stopped")
    return 1 if args.once and any(not e.ok for e in entries) else 0


def cmd_log(args: argparse.Namespace) -> int:
    """The latest entries of the sync log, as lines or JSON."""
    entries = sync.SyncLog(State(project_root(args)).sync_log).tail(args.count)
    if args.json:
        print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
        return 0
    for entry in entries:
        print("\n".join(entry.describe()))
    if not entries:
        print("the sync log is empty: run rp-bts sync")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sync", help="sync issue status with the trackers (Clarity pull and push), every period"
    )
    parser.add_argument("--once", action="store_true", help="one round, then exit (cron, CI)")
    parser.add_argument(
        "--refresh-fields", action="store_true", help="reload and show attributes and lookups"
    )
    parser.set_defaults(func=cmd_sync)
    commands = parser.add_subparsers(dest="sync_command", metavar="COMMAND")
    log = commands.add_parser("log", help="show the latest sync log entries")
    log.add_argument("--json", action="store_true", help="as a JSON array")
    log.add_argument("-n", "--count", type=int, default=50, help="entries (default 50)")
    log.set_defaults(func=cmd_log)
