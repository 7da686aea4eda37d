"""The ``rp-bts`` command: integrations, saved results (process, post, link) and the local tracker.

Input errors are one line on stderr and exit status 2; what the agent could not do is listed and
gives exit status 1, so a CI step can tell the two apart.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, _cli_integrations, _cli_rules, _cli_sync, kinds
from ._cli_common import load
from .config_types import Config, ConfigError
from .files import write_atomic
from .flush import flush
from .hooks import HookManager
from .launch import Finish, LaunchEnd, finish
from .model import IssueRef, ResultsFormatError, RunResults, TestResult
from .modes import MODES
from .pipeline import Agent, Options, merge_runs
from .redact import Redactor
from .state import State
from .summary import issue_lines, plan_lines
from .tracker import TrackerError

INCLUDE_CHOICES = ("logs", "attachments", "comments")


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def _hooks(args: argparse.Namespace) -> HookManager:
    hooks = HookManager()
    for module in args.hooks or ():
        try:
            hooks.register_module(module)
        except ImportError as exc:
            raise CliError(f"--hooks {module}: cannot import it ({exc})") from None
    return hooks


def _include(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in INCLUDE_CHOICES]
    if unknown:
        raise CliError(f"--include: unknown {unknown[0]!r}; use {','.join(INCLUDE_CHOICES)}")
    return items


def _agent(args: argparse.Namespace, config: Config, **options: object) -> Agent:
    return Agent(
        config,
        hooks=_hooks(args),
        redactor=Redactor(config.secrets()),
        options=Options(spool=State(config.root).spool, **options),  # type: ignore[arg-type]
    )


def _read(paths: Sequence[Path], config: Config) -> list[RunResults]:
    """Results files, untrusted: each keeps only the files inside its own run folder."""
    from .confine import confine

    runs = []
    try:
        for path in paths:
            run, lines = confine(RunResults.load(path), path, Path(config.root))
            for line in lines:
                print(line, file=sys.stderr)
            runs.append(run)
    except ResultsFormatError as exc:
        raise CliError(str(exc)) from None
    return runs


def _write(run: RunResults, path: Path, redactor: Redactor) -> None:
    write_atomic(path, redactor.redact(run.dumps()))


def _end(args: argparse.Namespace, config: Config, run: RunResults, how: Finish) -> int:
    """The launch's end, as a run of pytest has it: results and report first, leftovers
    replayed, filing under the time budget, mail."""
    redactor = Redactor(config.secrets())
    end = finish(
        config,
        Path(config.root),
        run.launch,
        run.results,
        how,
        hooks=_hooks(args),
        redactor=redactor,
    )
    _print_end(end, how, redactor)
    return 1 if end.errors else 0


def _print_end(end: LaunchEnd, how: Finish, redactor: Redactor) -> None:
    if how.mode == "dry-run":
        lines = plan_lines(end.filing.plan if end.filing else [])
    else:
        acted = end.filing.run.results if end.filing else ()
        lines = issue_lines(r for r in acted if how.only is None or r.nodeid in how.only)
    for line in end.flushed + (lines or ["no failures to file"]):
        print(redactor.redact(line))
    for notice in end.notices:
        print(notice.describe())
    if end.results_path is not None:
        print(f"results: {end.results_path}")
    if end.report_path is not None:
        print(f"report: {end.report_path}")
    for error in end.errors:
        print(error if error.startswith("rp-bts") else f"rp-bts: {error}", file=sys.stderr)


def cmd_process(args: argparse.Namespace) -> int:
    """Run the agent on saved results, several CI shards merged into one launch."""
    config = load(args)
    run = merge_runs(_read(args.results, config))
    state = State(config.root)
    writes = args.mode != "dry-run"
    how = Finish(
        mode=args.mode,
        integration=args.integration or "",
        notify=not args.no_notify,
        results=[args.output] if args.output and writes else [],
        default_results=writes and args.output is None,
        report=(args.report or state.report) if writes else None,
        spool=state.spool,
        prune=False,
    )
    return _end(args, config, run, how)


def _notify(config: Config, run: RunResults, hooks: HookManager) -> None:
    from .notify import notify  # jinja2 and email only for ``rp-bts notify``

    for notice in notify(config, run, hooks):
        print(notice.describe())


def _entry_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not an entry id (see rp-bts flush --list): {text!r}")
    return int(text)


def cmd_flush(args: argparse.Namespace) -> int:
    """Send what earlier runs could not; each kind with pending work says what it did.
    ``--list``, ``--retry-failed`` and ``--drop`` manage the tracker work kept."""
    from .outbox import Outbox
    from .replay import list_lines

    config = load(args)
    outbox = Outbox(State(config.root).outbox_db)
    if args.list:
        for line in list_lines(outbox) or ["nothing kept"]:
            print(line)
        return 0
    if args.drop or args.all_failed:
        ids = [int(i) for i in args.drop or ()]
        dropped = outbox.drop(ids, all_failed=args.all_failed) if outbox.path.exists() else 0
        print(f"dropped {dropped} entr{'y' if dropped == 1 else 'ies'}")
        return 0 if dropped or args.all_failed else 1
    if args.retry_failed and outbox.path.exists():
        print(f"retrying {outbox.retry_failed()} refused entr(ies)")
    lines = flush(config, say=functools.partial(print, flush=True))
    for line in lines or ["nothing pending"]:
        print(line)
    return 1 if any(line.startswith("failed") for line in lines) else 0


def cmd_notify(args: argparse.Namespace) -> int:
    """Evaluate the notification rules on saved results (already filed) and send what applies."""
    config = load(args)
    _notify(config, merge_runs(_read(args.results, config)), _hooks(args))
    return 0


def _pick(run: RunResults, wanted: str) -> TestResult:
    exact = [r for r in run.results if r.nodeid == wanted]
    matches = exact or [r for r in run.results if wanted in r.nodeid]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CliError(f"no test matching {wanted!r} in the results")
    names = ", ".join(r.nodeid for r in matches[:5])
    raise CliError(f"{wanted!r} matches {len(matches)} tests ({names}); give the full node id")


def _replace(run: RunResults, result: TestResult) -> RunResults:
    return RunResults(
        run.launch, tuple(result if r.nodeid == result.nodeid else r for r in run.results)
    )


def _field(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def cmd_post(args: argparse.Namespace) -> int:
    """ReportPortal's manual Post Issue, for one result of a saved results file."""
    config = load(args)
    (run,) = _read([args.results], config)
    result = _pick(run, args.test)
    if not result.failing:
        raise CliError(f"{result.nodeid} {result.outcome}; only failures are posted")
    how = Finish(
        integration=args.integration or "",
        notify=False,
        results=[args.results],
        default_results=False,
        spool=State(config.root).spool,
        prune=False,
        include=_include(args.include),
        log_lines=args.log_lines,
        only=frozenset((result.nodeid,)),
        issue_type=args.issue_type or "",
        fields=dict(args.field or ()),
    )
    return _end(args, config, run, how)


def cmd_link(args: argparse.Namespace) -> int:
    """ReportPortal's manual Link Issue: tie one result to an existing issue, with its status."""
    config = load(args)
    (run,) = _read([args.results], config)
    result = _pick(run, args.test)
    agent = _agent(args, config, integration=args.integration or "")
    try:
        integration = agent.route(result)
        remote = agent.tracker(integration).get(args.issue)
    except TrackerError as exc:
        raise CliError(agent.redactor.redact(str(exc))) from None
    finally:
        agent.close()
    ref = IssueRef(integration.name, remote.key, remote.url, remote.status, "linked")
    _write(_replace(run, result.with_issues((*result.issues, ref))), args.results, agent.redactor)
    print(f"linked    [{integration.name}] {remote.key} ({remote.status}) {result.nodeid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rp-bts",
        description="File test failures into bug trackers; manage integrations and issues.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        help="project root (default: the nearest folder up from here with rp-bts.toml or a"
        " pyproject.toml with [tool.rp_bts], else found like pytest's rootdir)",
    )
    parser.add_argument("--config", type=Path, help="project config file")
    parser.add_argument("--global-config", type=Path, help="global config file")
    parser.add_argument("--env-file", type=Path, help="file of secrets for ${VAR}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the agent does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _cli_integrations.add_parser(sub)
    _cli_rules.add_parser(sub)

    hooks_help = "module with rp_bts_* hook implementations (repeatable)"
    process = sub.add_parser("process", help="run the agent on saved results (CI shards merged)")
    process.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS", help="results JSON files (CI shards)"
    )
    process.add_argument(
        "--mode",
        choices=MODES,
        default="post",
        help="post (file and comment), link (only link) or dry-run (print the plan)",
    )
    process.add_argument("--integration", help="integration failures go to by default")
    process.add_argument("--output", type=Path, help="merged results file to write")
    process.add_argument(
        "--report", type=Path, help="HTML report to write (default: .rp-bts/report.html)"
    )
    process.add_argument("--hooks", action="append", help=hooks_help)
    process.add_argument("--no-notify", action="store_true", help="send no summary e-mail")
    process.set_defaults(func=cmd_process)

    _cli_sync.add_parser(sub)

    flush_cmd = sub.add_parser("flush", help="send what earlier runs could not")
    manage = flush_cmd.add_mutually_exclusive_group()
    manage.add_argument(
        "--list", action="store_true", help="list the tracker work kept, with ids; send nothing"
    )
    manage.add_argument(
        "--retry-failed",
        action="store_true",
        help="try refused entries again now (they are anyway once the configuration changes)",
    )
    manage.add_argument(
        "--drop", action="append", metavar="ID", type=_entry_id, help="forget one kept entry"
    )
    manage.add_argument(
        "--all-failed", action="store_true", help="forget every refused or unreadable entry"
    )
    flush_cmd.set_defaults(func=cmd_flush)

    notify_cmd = sub.add_parser("notify", help="send run summaries by the notification rules")
    notify_cmd.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS", help="results JSON files"
    )
    notify_cmd.add_argument("--hooks", action="append", help=hooks_help)
    notify_cmd.set_defaults(func=cmd_notify)

    post = sub.add_parser("post", help="file an issue for one failure of a results file")
    post.add_argument("results", type=Path, metavar="RESULTS", help="a results JSON file")
    post.add_argument("test", metavar="NODEID", help="node id (or a unique part of it)")
    post.add_argument(
        "--integration", help="integration to post to (it files there, beside other types)"
    )
    post.add_argument(
        "--issue-type", metavar="TYPE", help="issue type of this issue (default: the integration's)"
    )
    post.add_argument(
        "--field",
        action="append",
        type=_field,
        metavar="KEY=VALUE",
        help="a field of this issue, over the integration's fields (repeatable)",
    )
    post.add_argument("--include", help="logs,attachments,comments (default: the integration's)")
    post.add_argument(
        "--log-lines", type=int, metavar="N", help="log lines in the issue (default: log_lines)"
    )
    post.add_argument("--hooks", action="append", help=hooks_help)
    post.set_defaults(func=cmd_post)

    link = sub.add_parser("link", help="link one result of a results file to an existing issue")
    link.add_argument("results", type=Path, metavar="RESULTS", help="a results JSON file")
    link.add_argument("test", metavar="NODEID", help="node id (or a unique part of it)")
    link.add_argument("issue", metavar="ISSUE", help="issue key or URL")
    link.add_argument("--integration", help="integration the issue lives in")
    link.set_defaults(func=cmd_link, hooks=None)

    for name in kinds.names():  # a kind's own commands (the local tracker's ``issues``)
        try:
            commands = kinds.get(name).commands
        except kinds.KindError:  # a broken third-party kind never takes the CLI down
            continue
        if commands is not None:
            commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="rp-bts: %(message)s"
    )
    try:
        return int(args.func(args))
    except (CliError, ConfigError) as exc:
        text = str(exc)
        print(text if text.startswith("rp-bts") else f"rp-bts: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `rp-bts issues show X | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
