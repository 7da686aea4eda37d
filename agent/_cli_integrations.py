"""``rp-bts integrations``: list, add, edit, remove, unlink and reset integrations.

Every command works on files (the project's or, with ``--global``, the organisation's) through
``config_edit``, so the CLI validates exactly as the loader does and keeps the files' comments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import kinds
from ._cli_common import load, project_root
from .config import Scope, integration_keys, read_config_file
from .config_edit import add_integration, edit_integration, remove_integration, reset, unlink
from .config_types import ConfigError, Integration
from .connection import CheckOptions, check
from .model import to_plain
from .redact import MASK, Redactor, redact_url_credentials
from .rootdir import default_global_file, project_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["add_parser"]

Command = Callable[[argparse.Namespace], int]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``integrations`` and its subcommands; each sets ``func(args) -> int``."""
    parser = subparsers.add_parser("integrations", help="list and edit integrations")
    commands = parser.add_subparsers(dest="integrations_command", metavar="COMMAND", required=True)

    cmd = commands.add_parser("list", help="the integrations in use, global and project")
    cmd.add_argument("--json", action="store_true", help="a JSON array, secrets masked")
    cmd.set_defaults(func=_guarded(_list))

    cmd = commands.add_parser("add", help="add an integration")
    cmd.add_argument("kind", choices=kinds.names(), help="the integration's kind")
    cmd.add_argument("name", help="the integration's name (unique)")
    _settings(cmd)
    cmd.set_defaults(func=_guarded(_add))

    cmd = commands.add_parser("edit", help="change settings of an integration")
    cmd.add_argument("name", help="the integration's name (unique)")
    _settings(cmd)
    cmd.add_argument("--unset", action="append", default=[], metavar="KEY", help="delete a key")
    cmd.set_defaults(func=_guarded(_edit))

    cmd = commands.add_parser("remove", help="delete an integration")
    cmd.add_argument("name", help="the integration's name (unique)")
    _scope_option(cmd)
    cmd.set_defaults(func=_guarded(_remove))

    cmd = commands.add_parser("unlink", help="use the project's own integrations of a kind")
    cmd.add_argument("kind", choices=kinds.names(), help="the integration's kind")
    cmd.set_defaults(func=_guarded(_unlink))

    cmd = commands.add_parser("test", help="check that an integration works, with hints")
    cmd.add_argument("name", help="the integration's name (unique)")
    cmd.add_argument("--to", default="", metavar="ADDRESS", help="e-mail: send a test message")
    cmd.set_defaults(func=_guarded(_test))

    from ._cli_kinds import add_parsers  # a kind's configure and oauth steps

    add_parsers(commands, _guarded, parse_setting)

    cmd = commands.add_parser(
        "reset", help="delete the project's integrations of a kind: use global"
    )
    cmd.add_argument("kind", choices=kinds.names(), help="the integration's kind")
    cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cmd.set_defaults(func=_guarded(_reset))


def _scope_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--global", dest="use_global", action="store_true", help="edit the global file instead"
    )


def _settings(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        type=parse_setting,
        metavar="KEY=VALUE",
        help="a setting; VALUE is read as TOML when it parses (42, true, [..], {..}), else text",
    )
    _scope_option(cmd)


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with the value typed as TOML would type it, else kept as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _guarded(command: Command) -> Command:
    """Config and file errors become one line on stderr and exit code 2, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ConfigError as exc:
            where = ": ".join(part for part in (exc.file, exc.key) if part)
            print(f"rp-bts: {where}: {exc.message}", file=sys.stderr)
        except OSError as exc:
            print(f"rp-bts: {exc}", file=sys.stderr)
        return 2

    return run


def _global_file(args: argparse.Namespace) -> Path:
    path = getattr(args, "global_config", None)
    return Path(path) if path else default_global_file()


def _project_file(args: argparse.Namespace) -> Path:
    path = getattr(args, "config", None)
    if path:
        return Path(path)
    root = project_root(args)
    return project_config_file(root) or root / "rp-bts.toml"


def _target(args: argparse.Namespace) -> tuple[Path, Scope]:
    if args.use_global:
        return _global_file(args), "global"
    return _project_file(args), "project"


def _say(notes: list[str]) -> int:
    for note in notes:
        print(note)
    return 0


def _nested(settings: list[tuple[str, Any]]) -> dict[str, Any]:
    """``--set fields.priority=High`` as ``{"fields": {"priority": "High"}}``."""
    table: dict[str, Any] = {}
    for dotted, value in settings:
        *parents, key = dotted.split(".")
        node = table
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return table


def _add(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    table = {"kind": args.kind, "name": args.name, **_nested(args.settings)}
    return _say(add_integration(file, table, scope=scope, global_file=_global_file(args)))


def _edit(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    changes: dict[str, Any] = dict(args.settings)
    changes.update(dict.fromkeys(args.unset))
    if not changes:
        raise ConfigError(file, f"integrations[{args.name!r}]", "nothing to change; use --set")
    notes = edit_integration(file, args.name, changes, scope=scope, global_file=_global_file(args))
    return _say(notes)


def _remove(args: argparse.Namespace) -> int:
    file, scope = _target(args)
    notes = remove_integration(file, args.name, scope=scope, global_file=_global_file(args))
    return _say(notes)


def _unlink(args: argparse.Namespace) -> int:
    return _say(unlink(_project_file(args), args.kind, global_file=_global_file(args)))


def _reset(args: argparse.Namespace) -> int:
    file = _project_file(args)
    source = read_config_file(file, "project")
    entries = source.integrations if source else ()
    doomed = [str(e.table["name"]) for e in entries if e.kind == args.kind]
    if doomed and not args.yes:
        question = f"delete the project's {args.kind} integrations ({', '.join(doomed)})"
        if not sys.stdin.isatty():
            raise ConfigError(file, "", f"reset would {question}; pass --yes to confirm")
        if input(f"{question[0].upper()}{question[1:]}? [y/N] ").strip().lower() not in (
            "y",
            "yes",
        ):
            print("nothing changed")
            return 1
    return _say(reset(file, args.kind, global_file=_global_file(args)))


def _test(args: argparse.Namespace) -> int:
    """ReportPortal's test connection: one verdict line, then what to fix, one hint a line."""
    config = load(args)
    integration = config.integration(args.name)
    if integration is None:
        known = ", ".join(i.name for i in config.integrations) or "none"
        raise ConfigError(
            config.project_file or "",
            "",
            f"no integration named {args.name!r} (configured: {known})",
        )
    result = check(integration, CheckOptions(to=args.to))
    redactor = Redactor(config.secrets())
    print(redactor.redact(f"{'ok' if result.ok else 'FAILED'}: {result.summary}"))
    for line in (*result.details, *(f"hint: {h}" for h in result.hints)):
        print(redactor.redact(line))
    return 0 if result.ok else 1


def _list(args: argparse.Namespace) -> int:
    """Works on a fresh checkout: a ``${VAR}`` shows as itself, marked when it is unset."""
    config = load(args, fill=False)
    redactor = Redactor(config.secrets())
    rows = [redactor.redact_obj(describe(i, config.unset)) for i in config.integrations]
    for warning in config.warnings:
        print(f"rp-bts: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        print(_table(rows))
    else:
        print("no integrations configured")
    return 0


def describe(integration: Integration, unset: Sequence[str] = ()) -> dict[str, Any]:
    """An integration as JSON: identity, then its kind's settings with every secret masked.

    A secret shows as its ``${VAR}`` reference when it has one, else as ``***``; a value whose
    reference is not filled shows the reference, ``(unset)`` after it when ``unset`` names it.
    """
    row: dict[str, Any] = {
        "name": integration.name,
        "kind": integration.kind,
        "source": integration.source,
        "file": integration.file,
    }
    for key, spec in integration_keys(integration.kind).items():
        if key in row:
            continue
        value = getattr(integration.settings, key)
        ref = integration.refs.get(key)
        if ref is not None and (spec.secret or not value):
            value = ref + (" (unset)" if any(f"${{{n}}}" in ref for n in unset) else "")
        elif spec.secret and value:
            value = MASK
        if value is not None:
            row[key] = to_plain(value)
    return row


def _where(row: Mapping[str, Any]) -> str:
    """The column that says where an integration points: URL, SMTP host, Sauce region or file."""
    if row.get("url"):
        return redact_url_credentials(str(row["url"]))
    if row.get("host"):
        return f"{row['host']}:{row.get('port')}"
    return str(row.get("api_url") or row.get("data_center") or row.get("path", ""))


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "KIND", "SOURCE", "URL/HOST", "ISSUE TYPE")
    lines = [header] + [
        (r["name"], r["kind"], r["source"], _where(r), str(r.get("issue_type", ""))) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
