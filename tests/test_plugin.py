"""End-to-end runs of the plugin through pytester: filing, linking, xdist, modes, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import DEMO_FINGERPRINTS, all_files, by_nodeid, results_json, tracker_rows


def test_plugin_off_by_default_and_markers_registered(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--strict-markers")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert not (demo.path / ".rp-bts").exists()
    result = demo.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.slid(job_id*",
            "@pytest.mark.rp_attributes(*",
            "@pytest.mark.issue(issue_id*",
            "@pytest.mark.bts(*",
        ]
    )


def test_files_one_issue_per_fingerprint_then_comments(demo: pytest.Pytester) -> None:
    without = demo.runpytest("-p", "no:rp_bts")
    first = demo.runpytest("--rp-bts")
    assert first.ret == without.ret == pytest.ExitCode.TESTS_FAILED
    rows = tracker_rows(demo.path)
    assert len(rows) == DEMO_FINGERPRINTS
    assert len({fp for _, fp, _ in rows}) == DEMO_FINGERPRINTS
    first.stdout.fnmatch_lines(["*= rp-bts =*", "created   ?local? LOCAL-* test_demo.py::*"])

    data = by_nodeid(results_json(demo.path / ".rp-bts" / "results.json"))
    totals = [data[f"test_totals[items{i}]"] for i in range(3)]
    assert len({t["fingerprint"] for t in totals}) == 1
    assert {t["issues"][0]["key"] for t in totals} == {totals[0]["issues"][0]["key"]}
    assert data["test_passes"]["issues"] == [] and data["test_passes"]["outcome"] == "passed"
    assert data["test_uses_broken"]["outcome"] == "error"
    assert data["test_uses_broken"]["phase"] == "setup"
    assert data["test_expected_failure"]["outcome"] == "xfailed"
    assert data["test_unexpected_pass"]["outcome"] == "failed"
    assert data["test_unexpected_pass"]["exc_type"] == "Failed"
    assert data["test_unexpected_pass"]["fingerprint"].startswith("rpbts2-")
    assert data["test_totals[items0]"]["log"].strip().endswith("totals for [1]")
    assert {"key": "SLID", "value": "job-123"} in data["test_sauce"]["attributes"]
    job_page = "https://app.eu-central-1.saucelabs.com/tests/job-123"
    assert [link["url"] for link in data["test_sauce"]["links"]] == [job_page]
    first.stdout.fnmatch_lines([f"Sauce Labs job: test_demo.py::test_sauce: {job_page}"])
    assert data["test_key"]["attachments"][0]["name"] == "cart.txt"

    second = demo.runpytest("--rp-bts")
    assert second.ret == without.ret
    assert tracker_rows(demo.path) == rows
    comments = tracker_rows(demo.path, "SELECT issue_key FROM comments")
    assert len(comments) == DEMO_FINGERPRINTS  # one per issue per run, not one per failure
    second.stdout.fnmatch_lines(["commented ?local? LOCAL-*"])
    assert "created " not in second.stdout.str()


def test_issue_content_and_attachment(demo: pytest.Pytester) -> None:
    demo.runpytest("--rp-bts", "--rp-bts-launch=nightly", "--rp-bts-attribute=env:ci")
    ((summary, description),) = tracker_rows(
        demo.path, "SELECT summary, description FROM issues WHERE summary LIKE 'test_key%'"
    )
    assert summary == "test_key: KeyError: 'kiwi'"
    assert "nightly" in description and "env:ci" in description
    assert "test_demo.py::test_key" in description
    names = tracker_rows(demo.path, "SELECT name FROM attachments")
    assert ("cart.txt",) in names
    stored = [p for p in all_files(demo.path / ".rp-bts") if p.name.endswith("cart.txt")]
    assert any(p.read_bytes() == b"cart contents" for p in stored)
    ((sauce,),) = tracker_rows(
        demo.path, "SELECT description FROM issues WHERE summary LIKE 'test_sauce%'"
    )
    assert "https://app.eu-central-1.saucelabs.com/tests/job-123" in sauce


def test_xdist_files_the_same_issues_as_serial(demo: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    serial = demo.runpytest_subprocess("--rp-bts", "-p", "no:xdist")
    serial_rows = sorted((fp, status) for _, fp, status in tracker_rows(demo.path))
    serial_results = by_nodeid(results_json(demo.path / ".rp-bts" / "results.json"))
    (demo.path / ".rp-bts").rename(demo.path / "serial-run")

    parallel = demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert parallel.ret == serial.ret
    parallel.stdout.fnmatch_lines(["*2 workers*"])
    assert sorted((fp, status) for _, fp, status in tracker_rows(demo.path)) == serial_rows
    parallel_results = by_nodeid(results_json(demo.path / ".rp-bts" / "results.json"))
    assert set(parallel_results) == set(serial_results)
    for name, result in serial_results.items():
        assert parallel_results[name]["outcome"] == result["outcome"]
        assert parallel_results[name]["fingerprint"] == result["fingerprint"]
    assert parallel_results["test_key"]["attachments"][0]["name"] == "cart.txt"


def _state_files(state: Path) -> dict[Path, bytes]:
    """What a run recorded under ``.rp-bts/``, beside its results, report and run folder."""
    return {
        p: p.read_bytes()
        for p in all_files(state)
        if p.name not in ("results.json", "report.html")
        and "runs" not in p.parts
        and not p.name.endswith(("-shm", "-wal"))
    }


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_dry_run_prints_plan_writes_results_and_files_nothing(
    demo: pytest.Pytester, xdist: bool
) -> None:
    """Issue 12, point 14: a dry-run writes its results JSON (no issue references) and the
    report, and no tracker, outbox, filed record or history."""
    dry = ["--rp-bts", "--rp-bts-mode=dry-run", *(["-n", "2"] if xdist else [])]
    result = demo.runpytest(*dry)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "would local: create an issue for 3 test(s)*",
            "dry-run: nothing was filed, sent or recorded",
            "results: .rp-bts/results.json",
            "report: .rp-bts/report.html",
        ]
    )
    state = demo.path / ".rp-bts"
    # the run folder holds what the tests attached, for `rp-bts process` of these results
    assert {p.name for p in state.iterdir()} == {
        ".gitignore",
        "results.json",
        "report.html",
        "runs",
    }
    data = results_json(state / "results.json")
    assert len(data["results"]) == 10
    assert data["launch"]["mode"] == "dry-run"
    assert [r["issues"] for r in data["results"]] == [[]] * 10
    assert "test_totals" in (state / "report.html").read_text(encoding="utf-8")

    # after a real run, a dry-run changes nothing but the results and the report (a reader
    # of a SQLite file in WAL mode leaves its index, -shm, and an empty log, -wal)
    demo.runpytest("--rp-bts")
    kept = _state_files(state)
    assert {p.name for p in kept} >= {"tracker.db", "history.db"}
    demo.runpytest(*dry).stdout.fnmatch_lines(["would local: comment on LOCAL-*"])
    assert _state_files(state) == kept
    assert all(p.stat().st_size == 0 for p in state.glob("*-wal"))
    assert [r["issues"] for r in results_json(state / "results.json")["results"]] == [[]] * 10


def test_link_mode_never_creates(demo: pytest.Pytester) -> None:
    demo.runpytest("--rp-bts", "-k", "empty_cart")
    assert len(tracker_rows(demo.path)) == 1
    result = demo.runpytest("--rp-bts", "--rp-bts-mode=link")
    assert len(tracker_rows(demo.path)) == 1
    assert tracker_rows(demo.path, "SELECT count(*) FROM comments") == [(0,)]
    result.stdout.fnmatch_lines(["linked    ?local? LOCAL-1 (Open) test_demo.py::test_empty_cart"])
    data = by_nodeid(results_json(demo.path / ".rp-bts" / "results.json"))
    assert data["test_key"]["issues"] == []


def test_known_issue_marker_links_with_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        def test_a():
            assert 0
        @pytest.mark.issue("LOCAL-1", integration="local")
        def test_b():
            assert 1 == 2
        """
    )
    pytester.runpytest("--rp-bts", "-k", "test_a")
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines(["known     ?local? LOCAL-1 (Open) test_*::test_b"])
    assert len(tracker_rows(pytester.path)) == 1
    data = by_nodeid(results_json(pytester.path / ".rp-bts" / "results.json"))
    assert data["test_b"]["issues"][0]["action"] == "known"
    assert data["test_b"]["issues"][0]["status"] == "Open"

    closed = pytester.run(sys.executable, "-m", "rp_bts_agent.cli", "issues", "close", "LOCAL-1")
    assert closed.ret == 0
    again = pytester.runpytest("--rp-bts", "-k", "test_b")
    again.stdout.fnmatch_lines(
        ["known     ?local? LOCAL-1 (Closed) test_*::test_b: Closed, but the test still fails"]
    )


@pytest.mark.parametrize(("policy", "expected"), [("new", 2), ("reopen", 1)])
def test_closed_issue_follows_on_closed(
    pytester: pytest.Pytester, policy: str, expected: int
) -> None:
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.makefile(
        ".toml",
        **{"rp-bts": f'[[integrations]]\nkind = "local"\nname = "mine"\non_closed = "{policy}"\n'},
    )
    pytester.runpytest("--rp-bts")
    closed = pytester.run(sys.executable, "-m", "rp_bts_agent.cli", "issues", "close", "LOCAL-1")
    assert closed.ret == 0, closed.stderr.str()
    assert tracker_rows(pytester.path, "SELECT status FROM issues") == [("Closed",)]
    pytester.runpytest("--rp-bts")
    rows = tracker_rows(pytester.path, "SELECT key, status, relates_to FROM issues ORDER BY key")
    assert len(rows) == expected
    if policy == "new":
        assert rows[1][1:] == ("Open", "LOCAL-1")
    else:
        assert rows[0][1] == "Reopened"


def test_marker_errors_are_one_line_and_change_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.slid()
        def test_a():
            pass
        @pytest.mark.bts(integration="x", colour="red")
        def test_b():
            pass
        """
    )
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*test_a: @pytest.mark.slid: expected one job id; use @pytest.mark.slid(*",
            "*test_b: @pytest.mark.bts: unknown argument 'colour'; use *",
        ]
    )
    assert pytester.runpytest("--rp-bts", "--rp-bts-strict").ret == pytest.ExitCode.TESTS_FAILED


def test_strict_turns_integration_errors_into_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.bts('nowhere')\ndef test_a():\n    assert 0\n"
        "def test_b():\n    pass\n"
    )
    lenient = pytester.runpytest("--rp-bts")
    assert lenient.ret == pytest.ExitCode.TESTS_FAILED
    lenient.stdout.fnmatch_lines(
        ["failed    - test_*::test_a: *no tracker integration named 'nowhere'*"]
    )
    pytester.makefile(".toml", **{"rp-bts": 'default_integration = "nowhere"\n'})
    assert pytester.runpytest("--rp-bts", "-k", "test_b").ret == pytest.ExitCode.OK
    strict = pytester.runpytest("--rp-bts", "--rp-bts-strict", "-k", "test_b")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED


def test_options_precedence_cli_env_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    pytester.makeini("[pytest]\nrp_bts = true\nrp_bts_launch = from-ini\n")
    out = pytester.path / ".rp-bts" / "results.json"
    pytester.runpytest()
    assert results_json(out)["launch"]["name"] == "from-ini"
    monkeypatch.setenv("RP_BTS_LAUNCH", "from-env")
    pytester.runpytest()
    assert results_json(out)["launch"]["name"] == "from-env"
    pytester.runpytest("--rp-bts-launch=from-cli")
    assert results_json(out)["launch"]["name"] == "from-cli"
    monkeypatch.setenv("RP_BTS_MODE", "sideways")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*--rp-bts-mode: expected one of post, link, dry-run*"])


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[[integrations]]\nkind = "jura"\nname = "x"\n', "kind"),
        (
            '[[integrations]]\nkind = "local"\nname = "x"\n[[integrations]]\nkind = "local"\n'
            'name = "x"\n',
            "name",
        ),
        (
            '[[integrations]]\nkind = "email"\nname = "m"\nhost = "h"\n'
            'password = "${NOPE_NOT_SET}"\n',
            "password",
        ),
        ('project = "shop\n', ""),
        ('projekt = "shop"\n', "projekt"),
        ("launch = 42\n", "launch"),
    ],
    ids=["unknown-kind", "duplicate-name", "missing-var", "syntax", "unknown-key", "wrong-type"],
)
def test_bad_config_is_one_line_and_tests_still_run(
    demo: pytest.Pytester, toml: str, key: str
) -> None:
    demo.makefile(".toml", **{"rp-bts": toml})
    without = demo.runpytest("-p", "no:rp_bts")
    result = demo.runpytest("--rp-bts")
    assert result.ret == without.ret
    errors = [line for line in result.outlines if "rp-bts config error" in line]
    assert len(set(errors)) == 1, result.outlines
    assert "rp-bts.toml" in errors[0] and key in errors[0]
    result.stdout.fnmatch_lines(["*7 failed, 1 passed, 1 xfailed, 1 error*"])
    assert results_json(demo.path / ".rp-bts" / "results.json")["results"]


def test_secret_appears_nowhere(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Canary-Token-9f8e7d"
    monkeypatch.setenv("CANARY_TOKEN", secret)
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": (
                '[[integrations]]\nkind = "email"\nname = "mail"\nhost = "smtp.invalid"\n'
                'password = "${CANARY_TOKEN}"\n'
            )
        },
    )
    pytester.makepyfile(
        """
        import logging, os
        def test_leaky(rp_bts):
            token = os.environ["CANARY_TOKEN"]
            print("stdout", token)
            logging.getLogger("x").warning("log %s", token)
            rp_bts.attribute("token", token)
            rp_bts.attach(token.encode(), name="secret.txt")
            raise RuntimeError("failed with " + token)
        """
    )
    result = pytester.runpytest("--rp-bts", "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert tracker_rows(pytester.path), "an issue must have been filed"
    assert "= rp-bts =" in result.stdout.str()
    assert secret not in result.stdout.str() + result.stderr.str()
    leaks = [p for p in all_files(pytester.path / ".rp-bts") if secret.encode() in p.read_bytes()]
    # the test's own attachment holds the secret it wrote; nothing rp-bts writes may
    assert [p.name for p in leaks if not p.name.endswith("secret.txt")] == []
    data = json.dumps(results_json(pytester.path / ".rp-bts" / "results.json"))
    assert secret not in data and "***" in data


def test_conftest_hooks_change_fingerprint_route_and_fields(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import dataclasses
        def rp_bts_fingerprint(result, default):
            return "custom-" + result.exc_type
        def rp_bts_route(result, config):
            return "second" if "route_me" in result.nodeid else None
        def rp_bts_issue_fields(draft, results, integration, launch):
            return dataclasses.replace(draft, summary="[hooked] " + draft.summary,
                                       fields={**draft.fields, "team": integration.name})
        """
    )
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": (
                '[[integrations]]\nkind = "local"\nname = "first"\n'
                '[[integrations]]\nkind = "local"\nname = "second"\npath = "second.db"\n'
                'project_key = "TWO"\n'
            )
        },
    )
    pytester.makepyfile(
        "def test_a():\n    assert 0\ndef test_b():\n    assert 1 == 0\n"
        "def test_route_me():\n    raise KeyError('x')\n"
    )
    result = (
        pytester.runpytest("--rp-bts", "-n", "2")
        if _has_xdist()
        else pytester.runpytest("--rp-bts")
    )
    rows = tracker_rows(pytester.path, "SELECT fingerprint, summary, fields FROM issues")
    assert [(fp, s.startswith("[hooked] ")) for fp, s, _ in rows] == [
        ("custom-AssertionError", True)
    ]
    assert json.loads(rows[0][2]) == {"team": "first"}
    result.stdout.fnmatch_lines(["created   ?second? TWO-1*test_route_me*"])


def _has_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


def test_progress_line_when_agent_is_slow(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import time\n"
        "def rp_bts_issue_fields(draft, results, integration, launch):\n"
        "    time.sleep(0.8)\n"
    )
    pytester.makepyfile("def test_a():\n    assert 0\ndef test_b():\n    assert 1 == 0, 'b'\n")
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines(["rp-bts: filing issues... */2 actions done, *s"])


def test_progress_line_before_the_plan_has_no_counts(pytester: pytest.Pytester) -> None:
    """While the agent has no plan yet (a user's routing hook, earlier work replayed, the
    trackers looked up) the line says how long, not ``0/0 actions done``."""
    pytester.makeconftest("import time\ndef rp_bts_route(result, config):\n    time.sleep(1.5)\n")
    pytester.makepyfile("def test_a():\n    assert 0\n")
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines(["rp-bts: filing issues... 1s"])
    result.stdout.no_fnmatch_line("*0/0 actions done*")


def test_without_terminal_reporter(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--rp-bts", "-p", "no:terminal")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS


def test_marker_errors_reach_the_controller_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.issue()\ndef test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("--rp-bts", "-n", "2")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_a: @pytest.mark.issue: expected one issue id*"])


def test_hostile_output_is_capped_and_filed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        class Nasty(Exception):
            def __str__(self):
                raise RuntimeError("no str for you")

        def test_nasty_exception():
            raise Nasty()

        def test_huge_message():
            print("\\x00\\x1b[31mbinary \\udcff and emoji \\U0001F4A5" * 10)
            raise ValueError("x" * 10_000_000)

        def test_markup(rp_bts):
            rp_bts.attribute("note", "{code}[~admin]<b>h</b>\\r\\nX-Header: 1")
            assert "{panel}[~everyone]" == "<script>"
        """
    )
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    rows = tracker_rows(pytester.path, "SELECT summary, length(description) FROM issues")
    assert len(rows) == 3
    summaries = sorted(s for s, _ in rows)
    assert summaries[0].startswith("test_huge_message: ValueError: xxx")
    assert all(len(s) <= 255 and "\n" not in s for s, _ in rows)
    assert max(size for _, size in rows) < 100_000
    assert "test_nasty_exception: test_plugin" in summaries[2] or "Nasty" in summaries[2]
    results = pytester.path / ".rp-bts" / "results.json"
    assert results.stat().st_size < 1_000_000


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_fingerprint_params_keeps_parameters_apart(demo: pytest.Pytester, xdist: bool) -> None:
    demo.makefile(".toml", **{"rp-bts": "fingerprint_params = true\n"})
    args = ["--rp-bts", "-k", "totals", *(["-n", "2"] if xdist else [])]
    (demo.runpytest_subprocess if xdist else demo.runpytest)(*args)
    assert len(tracker_rows(demo.path)) == 3


def test_old_run_folders_are_pruned(pytester: pytest.Pytester) -> None:
    runs = pytester.path / ".rp-bts" / "runs"
    for day in range(1, 26):
        (runs / f"200001{day:02d}-000000-old").mkdir(parents=True)
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.runpytest("--rp-bts")
    kept = sorted(p.name for p in runs.iterdir())
    assert len(kept) == 20
    assert kept[0] == "20000107-000000-old"
    assert not kept[-1].endswith("-old")  # this run's folder


def test_a_raising_hook_is_one_line_and_changes_no_verdict(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def rp_bts_fingerprint(result, default):\n    raise RuntimeError('hook bug')\n"
    )
    pytester.makepyfile("def test_a():\n    assert 0\ndef test_b():\n    pass\n")
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["rp-bts: capturing test_*::test_a failed: RuntimeError('hook bug')"]
    )
    assert pytester.runpytest("--rp-bts", "-k", "test_b").ret == pytest.ExitCode.OK


def test_time_budget_keeps_the_rest_for_flush(demo: pytest.Pytester) -> None:
    demo.makefile(".toml", **{"rp-bts": "time_budget = 1\n"})
    demo.makeconftest(  # drafting outlasts the budget: nothing is filed in time
        "import time\n"
        "def rp_bts_issue_fields(draft, results, integration, launch):\n"
        "    time.sleep(0.6)\n"
    )
    result = demo.runpytest("--rp-bts", "--rp-bts-mode=post")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the time budget of * s is spent; the rest is kept*"])
    (demo.path / "conftest.py").unlink()
    assert len(tracker_rows(demo.path)) < DEMO_FINGERPRINTS
    flushed = demo.run(sys.executable, "-m", "rp_bts_agent.cli", "flush")
    assert flushed.ret == 0, flushed.stdout.str()
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS
    again = demo.run(sys.executable, "-m", "rp_bts_agent.cli", "flush")
    assert "nothing pending" in again.stdout.str()
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS


def test_the_state_folder_ignores_itself_in_git(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.runpytest("--rp-bts")
    ignore = pytester.path / ".rp-bts" / ".gitignore"
    assert ignore.read_text(encoding="utf-8").splitlines()[-1] == "*"
    ignore.write_text("# mine\n", encoding="utf-8")  # a user's own stays as it is
    pytester.runpytest("--rp-bts")
    assert ignore.read_text(encoding="utf-8") == "# mine\n"
