"""What does a Jira that does not answer cost a run? (goal: one connect timeout plus 1 s at most).

Runs a small failing suite with pytest twice, with the plugin on and a Jira integration whose
address does not answer, and with ``-p no:rp_bts``, and prints the difference in wall time. "Does
not answer" is a local TCP socket that listens with a backlog of 0 and never accepts, its backlog
filled by connections of our own: the kernel drops every further SYN, so a client's connect times
out (a closed port would refuse at once, which costs nothing). The script checks that a probe
connect does time out before it measures. Then it runs the suite once more with the plugin on,
when the first run's work waits in the outbox, which must not cost a second timeout either. Each
round starts from an empty ``.rp-bts``; the table gives medians (a shared machine is noisy).
Prints a table to paste into the README.

    python benchmarks/unreachable.py                 # 20 tests, 10 failing over 5 fingerprints
    python benchmarks/unreachable.py --rounds 5      # more rounds on a noisy machine
    python benchmarks/unreachable.py --check         # exit 1 when over the goal
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from _common import rp_bts_version

from rp_bts_agent.http import CONNECT_TIMEOUT

#: what a run may spend on a tracker that does not answer, beyond one connect timeout
SLACK: Final = 1.0
CONFIG: Final = """
[[integrations]]
kind = "jira"
name = "Unreachable"
url = "http://127.0.0.1:{port}"
project_key = "SHOP"
auth = "basic"
username = "${{JIRA_USER}}"
password = "${{JIRA_TOKEN}}"
"""


@contextmanager
def black_hole() -> Iterator[int]:
    """A port whose connects time out: listening, backlog 0, never accepting, queue full."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        while len(fillers) < 16:  # Linux queues backlog + 1; stop at the first that hangs
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def probe(port: int, timeout: float = 1.0) -> str:
    """How a fresh connect to ``port`` ends: "timeout" is what this benchmark needs."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return "connected"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def write_suite(root: Path, tests: int, failing: int, fingerprints: int) -> None:
    """``tests`` quick tests, ``failing`` of them failing with ``fingerprints`` distinct bugs."""
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "global.toml").write_text("# no global integrations\n", encoding="utf-8")
    body = ["import pytest\n\n"]
    for n in range(tests):
        if n < failing:
            body.append(f"def test_{n:03d}():\n    assert {n % fingerprints} == -1, 'bug'\n\n\n")
        else:
            body.append(f"def test_{n:03d}():\n    assert True\n\n\n")
    (root / "test_suite.py").write_text("".join(body), encoding="utf-8")


def run(cmd: list[str], root: Path, env: dict[str, str], failing: int) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 1 or f"{failing} failed" not in proc.stdout:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        sys.exit(f"pytest run failed (exit {proc.returncode}): {' '.join(cmd[3:])}\n{tail}")
    return elapsed, proc.stdout


def child_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RP_BTS_", "PYTEST_"))}
    env.update(
        RP_BTS_GLOBAL_CONFIG=str(root / "global.toml"),
        JIRA_USER="qa@example.com",
        JIRA_TOKEN="not-a-real-token",
    )
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tests", type=int, default=20, help="tests in the suite (20)")
    parser.add_argument("--failing", type=int, default=10, help="of them failing (10)")
    parser.add_argument("--fingerprints", type=int, default=5, help="distinct bugs (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when over the goal")
    args = parser.parse_args(argv)
    if not 1 <= args.fingerprints <= args.failing <= args.tests:
        parser.error("need 1 <= --fingerprints <= --failing <= --tests")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    goal = CONNECT_TIMEOUT + SLACK
    times: dict[str, list[float]] = {"off": [], "first": [], "again": []}
    queued = ""
    with tempfile.TemporaryDirectory(prefix="rp-bts-unreachable-") as tmp, black_hole() as port:
        root = Path(tmp)
        how = probe(port)
        if how != "timeout":
            sys.exit(f"the black hole on port {port} does not time out a connect: {how}")
        write_suite(root, args.tests, args.failing, args.fingerprints)
        (root / "rp-bts.toml").write_text(CONFIG.format(port=port), encoding="utf-8")
        env = child_env(root)
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        run([*base, "-p", "no:rp_bts"], root, env, args.failing)  # warm-up: bytecode, caches
        for number in range(1, args.rounds + 1):
            shutil.rmtree(root / ".rp-bts", ignore_errors=True)
            times["off"].append(run([*base, "-p", "no:rp_bts"], root, env, args.failing)[0])
            for name in ("first", "again"):
                elapsed, out = run([*base, "--rp-bts"], root, env, args.failing)
                times[name].append(elapsed)
                queued = queued or next((x for x in out.splitlines() if "queued" in x), "")
            print(
                f"  round {number}/{args.rounds}: off {times['off'][-1]:.2f} s, first"
                f" {times['first'][-1]:.2f} s, again {times['again'][-1]:.2f} s",
                file=sys.stderr,
            )
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"pytest-rp-bts {rp_bts_version()}: {args.tests} tests, {args.failing} failing"
        f" ({args.fingerprints} fingerprints), Jira not answering (connect timeout"
        f" {CONNECT_TIMEOUT:g} s), {args.rounds} rounds; Python {platform.python_version()},"
        f" {platform.system()}"
    )
    print()
    print("| run (median)                   | wall     | extra    |")
    print("|--------------------------------|----------|----------|")
    rows = [
        ("off (`-p no:rp_bts`)", "off"),
        ("on, first run", "first"),
        ("on, again (work in the outbox)", "again"),
    ]
    for label, name in rows:
        extra = f"{median[name] - median['off']:6.2f} s" if name != "off" else "        "
        print(f"| {label:<30} | {median[name]:6.2f} s | {extra} |")
    print()
    worst = max(median["first"], median["again"]) - median["off"]
    verdict = "ok" if worst <= goal else "OVER GOAL"
    print(
        f"most extra time: {worst:.2f} s (goal <= {goal:g} s: one connect timeout + 1 s): {verdict}"
    )
    if queued:
        print(f"  {queued.strip()}")
    return 1 if args.check and worst > goal else 0


if __name__ == "__main__":
    sys.exit(main())
