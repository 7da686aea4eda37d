"""How fast does ``rp-bts process`` file a large failing run into a slow Jira? (goal: at most 1.5
times the floor, and under 200 MiB of memory).

Builds a run of 1,000 failing results over 100 fingerprints, each with 1 MB of log spilled to the
run folder by the agent's own code (as a pytest run leaves them), and files its results JSON with
``rp-bts process`` in a subprocess into the contract-checking Jira test server
(``tests/jira_server.py``, Cloud, 20 ms per request). Then it files a second launch of the same
failures, when every fingerprint has its issue (comments). The floor is measured in the same run:
a minimal client (plain requests, four at a time like the agent's pool), a process of its own like
the agent, against a fresh server with the same latency, making only the requests any client must
make: one search, one bulk create per 50 issues and one attachment per issue. Both processes are
started by a small helper process and timed from start to exit; the agent's peak RSS is the
helper's ``RUSAGE_CHILDREN`` (a child forked from this process, which holds the server and its
100 MB of attachments, would count this process's memory too). Each round uses fresh servers and
alternates which side goes first; the table gives median times and the median of the paired
agent/floor ratios. Prints a table to paste into the README.

    python benchmarks/filing.py                      # 1,000 results, 100 fingerprints, 1 MB logs
    python benchmarks/filing.py --rounds 5           # more rounds on a noisy machine
    python benchmarks/filing.py --latency 0.05       # a farther Jira
    python benchmarks/filing.py --check              # exit 1 when a goal is missed

Needs the development install (``pip install -e '.[dev]'``): the test server validates every
request against ``tests/contracts/jira-platform-v2.json`` with openapi-core.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import requests
from _common import rp_bts_version
from requests.adapters import HTTPAdapter

from rp_bts_agent import kinds as rp_bts_kinds
from rp_bts_agent.files import spill, write_atomic
from rp_bts_agent.model import Launch, RunResults, TestResult

#: the floor gets as many calls in flight as the agent gives a Jira integration
POOL_SIZE = rp_bts_kinds.get("jira").pool_size

if TYPE_CHECKING:
    from jira_server import RunningJira

# the Jira test server lives with the tests; imported only where it is used (it loads pytest)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
RATIO_GOAL: Final = 1.5
RSS_GOAL_MB: Final = 200
#: issues per ``POST /rest/api/2/issue/bulk``, Jira's limit
BULK: Final = 50
_KEY: Final = re.compile(r"(?<=/)SHOP-\d+(?=/|$)")
_ID: Final = re.compile(r"(?<=/)\d+(?=/|$)")
CONFIG: Final = """
# every bug its own issue: the storm guard would make the run one "run broken" issue
max_new_issues = 100000

[[integrations]]
kind = "jira"
name = "Bench"
url = "{url}"
project_key = "SHOP"
auth = "basic"
username = "${{JIRA_USER}}"
password = "${{JIRA_TOKEN}}"
issue_type = "Bug"
"""


@dataclass(frozen=True, slots=True)
class FloorIssue:
    """What the minimal client files for one fingerprint: the same log file as the agent."""

    label: str
    summary: str
    description: str
    log: str


def log_text(size: int) -> str:
    """``size`` characters of plausible, numbered log lines."""
    line = "2026-11-23 14:00:00,000 INFO shop.checkout: step {:07d} ok in 12 ms\n"
    return "".join(line.format(n) for n in range(max(-(-size // len(line.format(0))), 1)))


def make_run(
    run_dir: Path, results: int, fingerprints: int, log_bytes: int, run_id: str
) -> tuple[RunResults, list[FloorIssue]]:
    """The results a pytest run would leave: long logs spilled to ``run_dir`` by the agent."""
    out: list[TestResult] = []
    floor: dict[str, FloorIssue] = {}
    body = log_text(log_bytes)
    for n in range(results):
        group = n % fingerprints
        fingerprint = f"rpbts1-{group:020x}"
        message = f"assert checkout(cart_{group}) == 'paid'"
        inline, files = spill({"log": f"log of test {n}\n{body}"}, run_dir)
        longrepr = f"def test_checkout():\n>       {message}\nE       AssertionError\n"
        out.append(
            TestResult(
                nodeid=f"tests/test_shop_{group:03d}.py::test_checkout[{n}]",
                outcome="failed",
                duration=0.01,
                exc_type="AssertionError",
                message=message,
                longrepr=longrepr,
                log=inline["log"],
                fingerprint=fingerprint,
                attachments=tuple(files),
            )
        )
        if fingerprint not in floor:
            tail = "\n".join(inline["log"].splitlines()[-50:])
            floor[fingerprint] = FloorIssue(
                fingerprint,
                f"test_checkout: AssertionError: {message}",
                f"{{noformat}}\n{longrepr}{{noformat}}\n{{noformat}}\n{tail}\n{{noformat}}",
                files[0].path,
            )
    now = time.time()
    return RunResults(Launch("bench", run_id, start=now, end=now), tuple(out)), list(floor.values())


def floor_client(url: str, user: str, password: str, plan: Sequence[FloorIssue]) -> None:
    """The fewest requests that file ``plan``: one search, bulk creates, one attachment each."""
    session = requests.Session()
    session.auth = (user, password)
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))
    labels = ", ".join(f'"{issue.label}"' for issue in plan)
    search = session.get(
        f"{url}/rest/api/2/search/jql",
        params={"jql": f"project = SHOP AND labels in ({labels})", "fields": "labels"},
    )
    search.raise_for_status()

    def create(chunk: Sequence[FloorIssue]) -> list[tuple[str, str]]:
        updates = [
            {
                "fields": {
                    "project": {"key": "SHOP"},
                    "issuetype": {"name": "Bug"},
                    "summary": issue.summary,
                    "description": issue.description,
                    "labels": [issue.label],
                }
            }
            for issue in chunk
        ]
        reply = session.post(f"{url}/rest/api/2/issue/bulk", json={"issueUpdates": updates})
        reply.raise_for_status()
        created = reply.json()["issues"]
        return [(str(c["key"]), issue.log) for c, issue in zip(created, chunk, strict=True)]

    def attach(key: str, path: str) -> None:
        with open(path, "rb") as handle:
            reply = session.post(
                f"{url}/rest/api/2/issue/{key}/attachments",
                files={"file": ("failure-details.txt", handle, "text/plain")},
                headers={"X-Atlassian-Token": "no-check"},
            )
        reply.raise_for_status()

    with ThreadPoolExecutor(POOL_SIZE) as pool:
        creates = [pool.submit(create, plan[i : i + BULK]) for i in range(0, len(plan), BULK)]
        attaching: list[Future[None]] = [
            pool.submit(attach, key, path)
            for done in as_completed(creates)
            for key, path in done.result()
        ]
        for future in attaching:
            future.result()


def start_jira(latency: float) -> RunningJira:
    import jira_server

    jira_server.contract()  # loaded once, before any clock runs (it takes seconds)
    running = jira_server.start("cloud")
    running.state.latency = latency
    return running


def stop_jira(running: RunningJira) -> None:
    import jira_server

    jira_server.stop(running)


def check_filed(running: RunningJira, fingerprints: int, log_bytes: int, who: str) -> None:
    """Every fingerprint has one issue whose attachment holds its whole log; no violations."""
    state = running.state
    problems = list(state.violations[:3])
    if len(state.issues) != fingerprints:
        problems.append(f"{len(state.issues)} issues, expected {fingerprints}")
    short = [
        key
        for key in state.issues
        if not any(a["size"] >= log_bytes for a in state.attachments.get(key, ()))
    ]
    if short:
        problems.append(f"{len(short)} issues without the whole log attached, e.g. {short[0]}")
    if problems:
        sys.exit(f"{who}: " + "; ".join(problems))


def _measured(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[int, str, float, int]:
    """In a fresh helper process: run ``cmd``; exit status, output tail, seconds, peak RSS KiB."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
    return proc.returncode, tail, elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def run_measured(what: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak RSS (MiB) of ``cmd``, started from a small process (see the docstring)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as helper:
        code, tail, elapsed, rss = helper.submit(_measured, cmd, str(cwd), env).result()
    if code != 0:
        sys.exit(f"{what} failed (exit {code}):\n{tail}")
    return elapsed, rss // 1024


def run_agent(root: Path, results: Path, env: dict[str, str], output: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "rp_bts_agent.cli", "--root", str(root), "process"]
    return run_measured(
        "rp-bts process", [*cmd, str(results), "--no-notify", "--output", str(output)], root, env
    )


def run_floor(root: Path, url: str, plan: Sequence[FloorIssue]) -> float:
    """The minimal client as a process of its own: this script with ``--floor-client``."""
    from jira_server import PASSWORD, USER

    job = root / "floor.json"
    data = {"url": url, "user": USER, "password": PASSWORD, "plan": [asdict(p) for p in plan]}
    job.write_text(json.dumps(data), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-client", str(job)]
    return run_measured("the minimal client", cmd, root, dict(os.environ))[0]


def child_env(root: Path, user: str, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RP_BTS_", "JIRA_"))}
    env.update(
        RP_BTS_GLOBAL_CONFIG=str(root / "no-global.toml"), JIRA_USER=user, JIRA_TOKEN=password
    )
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--results", type=int, default=1000, help="failing results (1000)")
    parser.add_argument("--fingerprints", type=int, default=100, help="distinct bugs (100)")
    parser.add_argument("--log-mb", type=float, default=1.0, help="log per result, MB (1)")
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds per Jira request (0.02)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, fresh servers (3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--floor-client", type=Path, help=argparse.SUPPRESS)  # run_floor's child
    args = parser.parse_args(argv)
    if args.fingerprints < 1 or args.results < args.fingerprints or args.log_mb <= 0:
        parser.error("need 1 <= --fingerprints <= --results and --log-mb > 0")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


@dataclass(slots=True)
class Round:
    """One round's figures: seconds, requests and peak RSS (MiB)."""

    floor_time: float = 0.0
    floor_requests: int = 0
    first_time: float = 0.0
    first_requests: int = 0
    #: the agent's calls by kind, first and second launch ("POST issue/{key}/attachments": 100)
    first_kinds: Counter[str] = field(default_factory=Counter)
    second_kinds: Counter[str] = field(default_factory=Counter)
    second_time: float = 0.0
    second_requests: int = 0
    rss: int = 0


def kinds(requests: Sequence[tuple[str, str]]) -> Counter[str]:
    """Calls by method and path, with ``{key}`` and ``{id}`` for issue keys and numeric ids."""
    paths = (path.split("?")[0].removeprefix("/rest/api/2/") for _, path in requests)
    return Counter(
        f"{method} {_ID.sub('{id}', _KEY.sub('{key}', path))}"
        for (method, _), path in zip(requests, paths, strict=True)
    )


def agent_round(
    root: Path, results: Sequence[Path], args: argparse.Namespace, log_bytes: int, out: Round
) -> None:
    """File the first launch (new issues), then the second (comments), into one fresh server."""
    from jira_server import PASSWORD, USER

    root.mkdir()
    jira = start_jira(args.latency)
    try:
        (root / "rp-bts.toml").write_text(CONFIG.format(url=jira.url), encoding="utf-8")
        env = child_env(root, USER, PASSWORD)
        out.first_time, rss = run_agent(root, results[0], env, root / "out-1.json")
        out.first_requests = len(jira.state.requests)
        out.first_kinds = kinds(jira.state.requests)
        check_filed(jira, args.fingerprints, log_bytes, "rp-bts process")
        jira.state.requests.clear()
        out.second_time, rss_again = run_agent(root, results[1], env, root / "out-2.json")
        out.second_requests = len(jira.state.requests)
        out.second_kinds = kinds(jira.state.requests)
        out.rss = max(rss, rss_again)
        comments = sum(len(c) for c in jira.state.comments.values())
        if comments != args.fingerprints or len(jira.state.issues) != args.fingerprints:
            sys.exit(f"second launch: {comments} comments, {len(jira.state.issues)} issues")
    finally:
        stop_jira(jira)


def floor_round(
    root: Path, plan: Sequence[FloorIssue], args: argparse.Namespace, log_bytes: int, out: Round
) -> None:
    jira = start_jira(args.latency)
    try:
        out.floor_time = run_floor(root, jira.url, plan)
        out.floor_requests = len(jira.state.requests)
        check_filed(jira, args.fingerprints, log_bytes, "minimal client")
    finally:
        stop_jira(jira)
    expected = 1 + math.ceil(args.fingerprints / BULK) + args.fingerprints
    assert out.floor_requests == expected, (out.floor_requests, expected)


def report(rounds: Sequence[Round], args: argparse.Namespace, json_mb: float) -> bool:
    """Print the table; True when both goals are met."""
    last = rounds[-1]
    fingerprints = args.fingerprints
    print(
        f"pytest-rp-bts {rp_bts_version()} filing: {args.results:,} failing results,"
        f" {fingerprints} fingerprints, {args.log_mb:g} MB of log each (results JSON"
        f" {json_mb:.1f} MB); Jira test server (Cloud), {args.latency * 1000:g} ms per request;"
        f" {len(rounds)} rounds; Python {platform.python_version()}, {platform.system()}"
    )
    print()
    print("| run (median wall time)               | requests | per fingerprint | wall     |")
    print("|--------------------------------------|----------|-----------------|----------|")
    rows = [
        ("floor: minimal client, new issues", last.floor_requests, [r.floor_time for r in rounds]),
        ("`rp-bts process`, new issues", last.first_requests, [r.first_time for r in rounds]),
        ("`rp-bts process` again, comments", last.second_requests, [r.second_time for r in rounds]),
    ]
    for name, count, walls in rows:
        wall = statistics.median(walls)
        print(f"| {name:<36} | {count:8,} | {count / fingerprints:15.2f} | {wall:6.2f} s |")
    print()
    # each round's agent and floor ran back to back: their ratio cancels the machine's drifts
    paired = sorted(r.first_time / r.floor_time for r in rounds)
    ratio = statistics.median(paired)
    peak = max(r.rss for r in rounds)
    ok_ratio, ok_rss = ratio <= RATIO_GOAL, peak < RSS_GOAL_MB
    print(
        f"agent/floor, new issues: median {ratio:.2f} of {len(rounds)} paired rounds"
        f" ({paired[0]:.2f} to {paired[-1]:.2f}) (goal <= {RATIO_GOAL}):"
        f" {'ok' if ok_ratio else 'OVER GOAL'}"
    )
    print(
        f"peak RSS of rp-bts process: {peak} MiB (goal < {RSS_GOAL_MB} MiB):"
        f" {'ok' if ok_rss else 'OVER GOAL'}"
    )
    for launch, counts in (("new issues", last.first_kinds), ("comments", last.second_kinds)):
        calls = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
        print(f"rp-bts process calls, {launch}: {calls}")
    return ok_ratio and ok_rss


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_client is not None:
        job = json.loads(args.floor_client.read_text(encoding="utf-8"))
        plan = [FloorIssue(**p) for p in job["plan"]]
        floor_client(job["url"], job["user"], job["password"], plan)
        return 0
    log_bytes = int(args.log_mb * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="rp-bts-filing-") as tmp:
        build = Path(tmp) / "build"
        print("building the run (spilling the logs)...", file=sys.stderr)
        first, plan = make_run(
            build / ".rp-bts" / "runs" / "bench-1",
            args.results,
            args.fingerprints,
            log_bytes,
            "bench-1",
        )
        # as a CI shard leaves them: the results beside the run folder, in the shard's .rp-bts
        # (`rp-bts process` takes files only from the results file's own run folder)
        results = [build / ".rp-bts" / "results-1.json", build / ".rp-bts" / "results-2.json"]
        write_atomic(results[0], first.dumps())
        write_atomic(results[1], RunResults(Launch("bench", "bench-2"), first.results).dumps())
        del first
        rounds: list[Round] = []
        for number in range(1, args.rounds + 1):
            out = Round()
            root = Path(tmp) / f"round-{number}"
            order = ("agent", "floor") if number % 2 else ("floor", "agent")
            for side in order:
                if side == "agent":
                    agent_round(root, results, args, log_bytes, out)
                else:
                    floor_round(Path(tmp), plan, args, log_bytes, out)
            rounds.append(out)
            print(
                f"  round {number}/{args.rounds}: floor {out.floor_time:.2f} s, agent"
                f" {out.first_time:.2f} s, comments {out.second_time:.2f} s",
                file=sys.stderr,
            )
        ok = report(rounds, args, results[0].stat().st_size / 1e6)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
