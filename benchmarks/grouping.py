"""One issue per bug: does a run of 2,000 failures with 40 causes file 40 issues, and at what cost?

Generates a throwaway project: ``product.py`` with 40 functions, each broken its own way (its own
exception type or message, raised at its own place), and 20 test modules of 100 tests, each test
calling one of them (test ``i`` hits cause ``i % 40``), so 2,000 tests fail with 40 causes. Then

1. files the run into the built-in local tracker (``--rp-bts``, ``group_by = "cause"``) and counts
   the issues filed against the causes (goal: equal);
2. times (CPU seconds, user + system, which a busy machine disturbs far less than wall time) the
   run plugin off (``-p no:rp_bts``), and in dry-run (fingerprints, grouping, planning
   against the tracker, no writes) with ``group_by = "cause"`` and with ``group_by = "test"``,
   interleaved, after one untimed warm-up each: cause minus test is the time grouping adds.

``max_new_issues`` is raised above 2,000 here, so the storm guard stays out of the comparison,
and ``time_budget`` to 900 s, so a busy machine does not leave the filing to ``rp-bts flush``.

    python benchmarks/grouping.py                # 2,000 failures, 40 causes, 3 rounds
    python benchmarks/grouping.py --tests 500 --causes 10 --rounds 5
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from _common import rp_bts_version
from overhead import child_env

MODULES = 20
#: exception types the causes cycle through (their messages differ too)
TYPES = ("LookupError", "ValueError", "KeyError", "RuntimeError", "ConnectionError")


def write_project(root: Path, tests: int, causes: int, group_by: str) -> None:
    """The product with ``causes`` broken functions and ``tests`` tests calling them."""
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "global.toml").write_text("# no integrations: the local tracker\n", encoding="utf-8")
    # a filing run on a busy machine must not be cut short by the default time budget
    config = f'group_by = "{group_by}"\nmax_new_issues = {tests + 1}\ntime_budget = 900\n'
    (root / "rp-bts.toml").write_text(config, encoding="utf-8")
    product = "".join(
        f"def cause_{c}(item):\n"
        f"    total = item * {c + 1}\n"
        f"    raise {TYPES[c % len(TYPES)]}(f'cause {c}: item {{item}} gave {{total}}')\n\n\n"
        for c in range(causes)
    )
    (root / "product.py").write_text(product, encoding="utf-8")
    per_module = -(-tests // MODULES)
    for module in range(MODULES):
        numbers = range(module * per_module, min((module + 1) * per_module, tests))
        body = "import product\n\n\n" + "".join(
            f"def test_{n}():\n    product.cause_{n % causes}({n})\n\n\n" for n in numbers
        )
        (root / f"test_gen_{module:02d}.py").write_text(body, encoding="utf-8")


def pytest_run(root: Path, *args: str) -> float:
    """CPU seconds (user + system) of one pytest run: on a shared machine its wall time
    measures the neighbours as much as the run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=child_env(root),
        stdout=subprocess.DEVNULL,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000, help="failing tests (default 2000)")
    parser.add_argument("--causes", type=int, default=40, help="distinct causes (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (default 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rp-bts-grouping-") as tmp:
        cause, test = Path(tmp, "cause"), Path(tmp, "test")
        for root, group_by in ((cause, "cause"), (test, "test")):
            root.mkdir()
            write_project(root, args.tests, args.causes, group_by)

        filed = pytest_run(cause, "--rp-bts")
        tracker = cause / ".rp-bts" / "tracker.db"
        if not tracker.exists():
            sys.exit("the filing run filed nothing: run it by hand in a copy to see why")
        with closing(sqlite3.connect(tracker)) as conn:
            ((issues,),) = conn.execute("SELECT count(*) FROM issues")
            ((grouped,),) = conn.execute("SELECT count(DISTINCT fingerprint) FROM issues")

        sides = {
            "off (`-p no:rp_bts`)": (cause, ("-p", "no:rp_bts")),
            'dry-run, `group_by = "cause"`': (cause, ("--rp-bts", "--rp-bts-mode", "dry-run")),
            'dry-run, `group_by = "test"`': (test, ("--rp-bts", "--rp-bts-mode", "dry-run")),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for root, argv in sides.values():  # warm-up: bytecode, disk caches
            pytest_run(root, *argv)
        for round_ in range(args.rounds):
            order = list(sides.items())
            for name, (root, argv) in order[round_ % 2 :] + order[: round_ % 2]:
                times[name].append(pytest_run(root, *argv))

    print(f"pytest-rp-bts {rp_bts_version()}: {args.tests:,} failing tests, {args.causes} causes")
    print(
        f"issues filed: {issues} for {args.causes} causes ({grouped} fingerprints)"
        f" -- goal: equal; filing run {filed:.1f} CPU s"
    )
    print("| run | median CPU time (s) |")
    print("| --- | ---: |")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"| {name} | {value:.2f} |")
    added = medians['dry-run, `group_by = "cause"`'] - medians['dry-run, `group_by = "test"`']
    print(f"grouping by cause adds {added:+.2f} CPU s to the dry-run ({args.rounds} rounds)")
    return 0 if issues == args.causes else 1


if __name__ == "__main__":
    sys.exit(main())
