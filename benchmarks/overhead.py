"""How much slower is a passing suite with ``--rp-bts`` on? (goal: at most 3%).

Generates a throwaway suite of trivial passing tests in a temporary directory, then times
``python -m pytest -q -p no:cacheprovider`` over it with the plugin on (``--rp-bts``, the built-in
local tracker, results JSON inside the temporary directory) and off (``-p no:rp_bts``). Runs are
interleaved, alternating which goes first, after one untimed warm-up of each, so disk caches,
bytecode and CPU frequency drift hit both sides alike. Prints a table to paste into a README.

    python benchmarks/overhead.py               # 50 files x 100 tests, 5 rounds
    python benchmarks/overhead.py --xdist       # the same with -n 2
    python benchmarks/overhead.py --rounds 9 --check   # exit 1 when over the goal
    python benchmarks/overhead.py --instructions        # instruction counts (valgrind)
    python benchmarks/overhead.py --instructions --no-report   # the plugin without its HTML report

Wall time on a shared 2-core machine varies by 10% from run to run, more than the plugin costs;
the paired median is the wall-time figure, and ``--instructions`` counts the CPU instructions of
one run of each side with callgrind, which gives the same figure on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Final

from _common import package_version, rp_bts_version

GOAL: Final = 1.03


def write_suite(root: Path, files: int, tests: int) -> None:
    """``files`` modules of ``tests`` trivial tests each, isolated from any enclosing project."""
    # An ini file pins the rootdir here, so no pyproject.toml or conftest.py above leaks in.
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "global.toml").write_text("# no integrations: the local tracker\n", encoding="utf-8")
    suite = root / "suite"
    suite.mkdir()
    for f in range(files):
        body = "".join(
            f"def test_{t:03d}():\n    assert {t} + 1 == {t + 1}\n\n\n" for t in range(tests)
        )
        (suite / f"test_gen_{f:03d}.py").write_text(body, encoding="utf-8")


def child_env(root: Path) -> dict[str, str]:
    """The caller's environment without anything that would change either run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RP_BTS_", "PYTEST_"))
        and key not in ("PYTHONDEVMODE", "PYTHONDONTWRITEBYTECODE")
    }
    # Bytecode caching stays on, as on a user's machine: with PYTHONDONTWRITEBYTECODE set (some
    # sandboxes set it) every run would compile the plugin afresh and pytest would rewrite the
    # test modules' assertions again, which measures the compiler, not the plugin.
    # The user's global integrations must not take part (nor be contacted).
    env["RP_BTS_GLOBAL_CONFIG"] = str(root / "global.toml")
    # A fixed string hash: with a random one, dict and set layouts (and so instruction counts)
    # differ from run to run by up to 0.5%, a sixth of the whole budget.
    env["PYTHONHASHSEED"] = "0"
    return env


def run_once(cmd: list[str], root: Path, env: dict[str, str], expected: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or f"{expected} passed" not in proc.stdout:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        sys.exit(f"benchmark run failed (exit {proc.returncode}): {' '.join(cmd[3:])}\n{tail}")
    return elapsed


def instructions(cmd: list[str], root: Path, env: dict[str, str], expected: int) -> int:
    """CPU instructions of one run, counted by valgrind's callgrind: the same on a busy machine."""
    out = root / "callgrind.out"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None or f"{expected} passed" not in proc.stdout:
        sys.exit(f"callgrind run failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return int(found.group(1))


def report_instructions(counts: dict[bool, int], expected: int, *, no_report: bool) -> int:
    ratio = counts[True] / counts[False]
    print(f"pytest-rp-bts {rp_bts_version()}: {expected:,} passing tests, instructions")
    print()
    on = "on (`--rp-bts --rp-bts-report=none`)" if no_report else "on (`--rp-bts`)"
    print(f"| off (`-p no:rp_bts`) | {counts[False]:,} |")
    print(f"| {on} | {counts[True]:,} |")
    print(f"| ratio on/off         | {ratio:.3f} |")
    print()
    extra = (counts[True] - counts[False]) / expected
    print(f"{extra:,.0f} extra instructions per test, start-up included (goal: ratio <= {GOAL})")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--files", type=int, default=50, help="test modules (default 50)")
    parser.add_argument("--tests", type=int, default=100, help="tests per module (default 100)")
    parser.add_argument("--xdist", action="store_true", help="run both sides with -n 2")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count CPU instructions with valgrind (one run each; immune to a busy machine)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="run the plugin with --rp-bts-report=none (what the report written by default costs)",
    )
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when the median ratio exceeds {GOAL}"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.files < 1 or args.tests < 1:
        parser.error("--rounds, --files and --tests must be at least 1")
    if args.xdist and find_spec("xdist") is None:
        parser.error("--xdist needs pytest-xdist installed in this interpreter")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    expected = args.files * args.tests
    with tempfile.TemporaryDirectory(prefix="rp-bts-bench-") as tmp:
        root = Path(tmp)
        write_suite(root, args.files, args.tests)
        env = child_env(root)
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suite"]
        if args.xdist:
            base += ["-n", "2"]

        def command(on: bool, run: int) -> list[str]:
            if not on:
                return [*base, "-p", "no:rp_bts"]
            report = ["--rp-bts-report=none"] if args.no_report else []
            return [*base, "--rp-bts", f"--rp-bts-results={root / f'results-{run}.json'}", *report]

        # Untimed warm-up: writes the assertion-rewritten bytecode, fills the OS caches.
        run_once(command(False, 0), root, env, expected)
        run_once(command(True, 0), root, env, expected)
        if args.instructions:
            return report_instructions(
                {on: instructions(command(on, 1), root, env, expected) for on in (False, True)},
                expected,
                no_report=args.no_report,
            )
        times: dict[bool, list[float]] = {False: [], True: []}
        for run in range(1, args.rounds + 1):
            order = (True, False) if run % 2 else (False, True)
            for on in order:
                times[on].append(run_once(command(on, run), root, env, expected))
            print(
                f"  round {run}/{args.rounds}: off {times[False][-1]:.3f} s,"
                f" on {times[True][-1]:.3f} s",
                file=sys.stderr,
            )

    median = {on: statistics.median(ts) for on, ts in times.items()}
    fastest = {on: min(ts) for on, ts in times.items()}
    # Each round's two runs are back to back, so their ratio cancels the machine's slow drifts;
    # the median of those paired ratios is the figure, its quartiles show the noise.
    paired = sorted(on / off for on, off in zip(times[True], times[False], strict=True))
    ratio = statistics.median(paired)
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [ratio, ratio, ratio]
    verdict = "ok" if ratio <= GOAL else "OVER GOAL"
    xdist = ", xdist -n 2" if args.xdist else ""
    print(
        f"pytest-rp-bts {rp_bts_version()} overhead: {expected:,} passing tests"
        f" ({args.files} files x {args.tests}){xdist}, {args.rounds} rounds;"
        f" Python {platform.python_version()}, pytest {package_version('pytest')},"
        f" {platform.system()}"
    )
    print()
    print("| plugin                | median   | min      |")
    print("|-----------------------|----------|----------|")
    print(f"| off (`-p no:rp_bts`)  | {median[False]:6.3f} s | {fastest[False]:6.3f} s |")
    print(f"| on (`--rp-bts`)       | {median[True]:6.3f} s | {fastest[True]:6.3f} s |")
    print(f"| ratio on/off          |          | {fastest[True] / fastest[False]:8.3f} |")
    print()
    print(
        f"paired ratio on/off: median {ratio:.3f}, quartiles {quartiles[0]:.3f} to "
        f"{quartiles[2]:.3f} (goal <= {GOAL}): {verdict}"
    )
    return 1 if args.check and ratio > GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
