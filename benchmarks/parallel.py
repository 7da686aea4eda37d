"""Do parallel runs in one folder file each failure once? (goal: 1.00 issue per fingerprint and
1.00 mark per run per issue, whatever N).

N runs of ``pytest --rp-bts`` start at once in one project folder (CI jobs sharing a workspace,
or a developer's runs overlapping), each of the same suite of 200 failing tests with 200
fingerprints, filing into the contract-checking Jira test server (``tests/jira_server.py``,
Cloud, 50 ms per request). The outbox's leases let one process file a fingerprint at a time;
the others wait and then comment. For N = 1, 2, 4, 8 (a fresh folder and server each) it prints
issues per fingerprint, marks per run per issue (the description's run marker for the run that
filed it, one comment for each other run; the mean, and the most any run left on one issue),
Jira requests per fingerprint, and the wall time from the first start to the last exit against
a single run's.

    python benchmarks/parallel.py                  # N = 1, 2, 4, 8
    python benchmarks/parallel.py --runs 1 4       # some of them
    python benchmarks/parallel.py --check          # exit 1 when a goal is missed

Needs the development install (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from _common import rp_bts_version

from rp_bts_agent.tracker import run_marker

if TYPE_CHECKING:
    from jira_server import RunningJira

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

FAILURES = 200
LATENCY = 0.05
TEST = """
def test_bug_{n}():
    assert {n} == -1, "bug {n}"
"""


@dataclass(frozen=True)
class Row:
    runs: int
    issues_per_fingerprint: float
    marks_per_run_per_issue: float
    most_marks: int
    requests_per_fingerprint: float
    wall: float
    failed_runs: int


def measure(runs: int) -> Row:
    import jira_server

    jira: RunningJira = jira_server.start("cloud")
    jira.state.latency = LATENCY
    try:
        with tempfile.TemporaryDirectory(prefix="rp-bts-parallel-") as folder:
            root = Path(folder)
            (root / "test_bugs.py").write_text("".join(TEST.format(n=n) for n in range(FAILURES)))
            (root / "pytest.ini").write_text("[pytest]\n")
            (root / "rp-bts.toml").write_text("time_budget = 600\n\n" + jira.integration_toml())
            env = dict(
                os.environ,
                JIRA_USER=jira_server.USER,
                JIRA_TOKEN=jira_server.PASSWORD,
                PYTHONDONTWRITEBYTECODE="1",
            )
            started = time.monotonic()
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        "--rp-bts",
                        f"--rp-bts-results=run{n}.json",
                    ],
                    cwd=root,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n in range(runs)
            ]
            codes = [p.wait() for p in procs]
            wall = time.monotonic() - started
            run_ids = [
                json.loads((root / f"run{n}.json").read_text())["launch"]["run_id"]
                for n in range(runs)
            ]
            issues = list(jira.state.issues.values())
            fingerprints = {label for i in issues for label in i["fields"]["labels"]}
            per_issue: list[Counter[str]] = []
            for issue in issues:
                texts = [issue["fields"]["description"]]
                texts += [c["body"] for c in jira.state.comments.get(issue["key"], [])]
                per_issue.append(
                    Counter(r for r in run_ids for t in texts if run_marker(r) in t.splitlines())
                )
            marks = sum(sum(c.values()) for c in per_issue)
            return Row(
                runs,
                len(issues) / max(len(fingerprints), 1),
                marks / max(len(issues) * runs, 1),
                max((max(c.values(), default=0) for c in per_issue), default=0),
                len(jira.state.requests) / FAILURES,
                wall,
                sum(1 for code in codes if code != 1),  # 1: tests failed, as they should
            )
    finally:
        jira_server.stop(jira)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    import jira_server

    jira_server.contract()  # loaded once, before any clock runs
    rows = [measure(n) for n in args.runs]
    single = next((r.wall for r in rows if r.runs == 1), rows[0].wall)
    print(
        f"rp-bts {rp_bts_version()}, Python {platform.python_version()}, {os.cpu_count()} CPUs;"
        f" {FAILURES} failures ({FAILURES} fingerprints), Jira test server at"
        f" {LATENCY * 1000:.0f} ms per request\n"
    )
    print(
        "| runs at once | issues per fingerprint | marks per run per issue (most) |"
        " requests per fingerprint | wall time | against one run |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.runs} | {r.issues_per_fingerprint:.2f} | {r.marks_per_run_per_issue:.2f}"
            f" ({r.most_marks}) | {r.requests_per_fingerprint:.1f} | {r.wall:.1f} s |"
            f" {r.wall / single:.2f}x |"
        )
    missed = [
        r
        for r in rows
        if r.issues_per_fingerprint != 1
        or r.marks_per_run_per_issue != 1
        or r.most_marks != 1
        or r.failed_runs
    ]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
