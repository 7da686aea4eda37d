"""``rp-bts rules``: list, add, edit, remove and test notification rules.

Edits go through ``config_edit`` as ``integrations`` does: the loader's checks before the file is
written, its comments kept. ``test`` evaluates a rule against the last results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._cli_common import load, project_root
from ._cli_integrations import _guarded, _nested, _say, _settings, _target
from .config_edit import add_rule, edit_rule, remove_rule
from .config_types import ConfigError, Rule
from .model import ResultsFormatError, RunResults, to_plain
from .state import State

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``rules`` and its subcommands; each sets ``func(args) -> int``."""
    parser = subparsers.add_parser("rules", help="list, edit and test notification rules")
    commands = parser.add_subparsers(dest="rules_command", metavar="COMMAND", required=True)

    cmd = commands.add_parser("list", help="the rules in use, global and project")
    cmd.add_argument("--json", action="store_true", help="a JSON array")
    cmd.set_defaults(func=_guarded(_list))

    cmd = commands.add_parser("add", help="add a rule (send_case, recipients, filters)")
    cmd.add_argument("name", help="the rule's name (unique)")
    _settings(cmd)
    cmd.set_defaults(func=_guarded(_add))

    cmd = commands.add_parser("edit", help="change keys of a rule")
    cmd.add_argument("name", help="the rule's name")
    _settings(cmd)
    cmd.add_argument("--unset", action="append", default=[], metavar="KEY", help="delete a key")
    cmd.set_defaults(func=_guarded(_edit))

    cmd = commands.add_parser("remove", help="delete a rule")
    cmd.add_argument("name", help="the rule's name")
    cmd.add_argument(
        "--global", dest="use_global", action="store_true", help="edit the global file instead"
    )
    cmd.set_defaults(func=_guarded(_remove))

    cmd = commands.add_parser("test", help="would a rule send for the last results, and to whom")
    cmd.add_argument("name", help="the rule's name")
    cmd.add_argument(
        "results",
        nargs="?",
        type=Path,
        metavar="RESULTS",
        help="a results JSON file (default: .rp-bts/results.json)",
    )
    cmd.set_defaults(func=_guarded(_test))


def _list(args: argparse.Namespace) -> int:
    rules = load(args, fill=False).rules
    if args.json:
        print(json.dumps([to_plain(r) for r in rules], indent=2, ensure_ascii=False))
    elif not rules:
        print("no rules configured")
    for rule in rules if not args.json else ():
        state = "" if rule.enabled else " (disabled)"
        via = f" via {rule.email!r}" if rule.email else ""
        to = ", ".join(rule.recipients) or "nobody"
        print(f"{rule.name}{state}: {rule.send_case} to {to}{via}")
    return 0


def _add(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    return _say(add_rule(file, {"name": args.name, **_nested(args.settings)}, scope=scope))


def _edit(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    changes: dict[str, Any] = dict(args.settings)
    changes.update(dict.fromkeys(args.unset))
    if not changes:
        raise ConfigError(file, f"rules[{args.name!r}]", "nothing to change; use --set")
    return _say(edit_rule(file, args.name, changes, scope=scope))


def _remove(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    return _say(remove_rule(file, args.name, scope=scope))


def _test(args: argparse.Namespace) -> int:
    """Exit 0 when the rule would send, 1 when it would not (with why)."""
    from .notify import recipients

    config = load(args, fill=False)
    rule = next((r for r in config.rules if r.name == args.name), None)
    if rule is None:
        known = ", ".join(r.name for r in config.rules) or "none"
        raise ConfigError(config.project_file, "", f"no rule named {args.name!r} (rules: {known})")
    path = args.results or State(project_root(args)).results
    try:
        run = RunResults.load(path)
    except ResultsFormatError as exc:
        raise ConfigError(path, "", f"{exc}; run the tests with --rp-bts first") from None
    return _verdict(rule, run, recipients(rule, run.launch.owner or config.owner))


def _verdict(rule: Rule, run: RunResults, to: tuple[str, ...]) -> int:
    from .notify import why_not

    reason = why_not(rule, run)
    if reason:
        print(f"would not send: {reason}")
        return 1
    if not to:
        print("would not send: no recipients (OWNER is not known)")
        return 1
    print(f"would send to {', '.join(to)}")
    return 0
