"""Notification rules and the embedded ``.eml`` outbox, with the ``rp_bts_email`` hook."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from rp_bts_agent.config_types import Rule
from rp_bts_agent.model import Attribute, IssueRef, Launch, RunResults, TestResult
from rp_bts_agent.notify import recipients, rule_applies, subject

LINKED = (IssueRef("local", "LOCAL-1", action="created"),)


def _run(*results: TestResult, name: str = "nightly", attrs: tuple[str, ...] = ()) -> RunResults:
    launch = Launch(
        name, "run-1", project="shop", attributes=tuple(Attribute.parse(a) for a in attrs)
    )
    return RunResults(launch, results)


def _tests(passed: int, linked: int = 0, unlinked: int = 0) -> tuple[TestResult, ...]:
    return (
        *(TestResult(f"t.py::p{i}", "passed") for i in range(passed)),
        *(TestResult(f"t.py::l{i}", "failed", issues=LINKED) for i in range(linked)),
        *(TestResult(f"t.py::u{i}", "failed") for i in range(unlinked)),
    )


@pytest.mark.parametrize(
    ("case", "tests", "sends"),
    [
        ("always", _tests(5), True),
        ("failed", _tests(5), False),
        ("failed", _tests(5, unlinked=1), True),
        ("to_investigate", _tests(5, linked=2), False),
        ("to_investigate", _tests(5, linked=2, unlinked=1), True),
        ("more_10", _tests(9, linked=1), False),  # exactly 10%: not more
        ("more_10", _tests(8, linked=2), True),
        ("more_20", _tests(8, linked=2), False),
        ("more_20", _tests(7, linked=3), True),
        ("more_50", _tests(5, linked=5), False),
        ("more_50", _tests(4, linked=6), True),
    ],
)
def test_send_cases(case: str, tests: tuple[TestResult, ...], sends: bool) -> None:
    assert rule_applies(Rule("r", send_case=case, recipients=("a@x",)), _run(*tests)) is sends


def test_launch_name_and_attribute_filters() -> None:
    run = _run(*_tests(1), name="nightly", attrs=("env:prod", "team:web"))
    assert rule_applies(Rule("r", send_case="always", launch_names=("nightly",)), run)
    assert not rule_applies(Rule("r", send_case="always", launch_names=("smoke",)), run)
    both = ("env:prod", "team:api")
    assert not rule_applies(Rule("r", send_case="always", attributes=both), run)
    assert rule_applies(
        Rule("r", send_case="always", attributes=both, attributes_operator="or"), run
    )
    assert not rule_applies(Rule("r", enabled=False, send_case="always"), run)


def test_owner_and_duplicates_resolved() -> None:
    rule = Rule("r", recipients=("Team@Example.com", "OWNER", "team@example.com"))
    assert recipients(rule, "lead@example.com") == ("team@example.com", "lead@example.com")
    assert recipients(rule, "") == ("team@example.com",)


def test_subject_counts_failures() -> None:
    run = _run(*_tests(3, linked=1, unlinked=1))
    assert subject(run) == "[shop] launch 'nightly' #run-1 finished: 2 failed of 5"


def _read(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_eml_written_with_hook_and_escaping(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": (
                'project = "shop"\nowner = "lead@example.com"\n'
                '[[rules]]\nname = "loud"\nsend_case = "failed"\n'
                'recipients = ["team@example.com", "OWNER"]\n'
                '[[rules]]\nname = "quiet"\nsend_case = "always"\nrecipients = ["x@example.com"]\n'
            )
        },
    )
    pytester.makeconftest(
        """
        def rp_bts_email(message, launch, rule_name):
            if rule_name == "quiet":
                return False
            message["X-Team"] = "web"
        """
    )
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parametrize("x", ["<script>alert(1)</script>\\r\\nBcc: evil@example.com"])
        def test_bad(x):
            assert 0
        """
    )
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines(
        [
            "mail      'loud' to team@example.com, lead@example.com: written to *.eml",
            "mail      'quiet' to x@example.com not sent: dropped by an rp_bts_email hook",
        ]
    )
    (eml,) = (pytester.path / ".rp-bts" / "outbox").glob("*.eml")
    message = _read(eml)
    assert message["To"] == "team@example.com, lead@example.com"
    assert message["X-Team"] == "web"
    assert message["Bcc"] is None
    assert str(message["Subject"]).strip().startswith("[shop] launch 'pytest' #")
    html = message.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "<script>" not in content and "&lt;script&gt;" in content
    assert "LOCAL-1" in content

    assert pytester.runpytest("--rp-bts", "--rp-bts-no-notify").ret == pytest.ExitCode.TESTS_FAILED
    assert len(list((pytester.path / ".rp-bts" / "outbox").glob("*.eml"))) == 1


def test_rule_identical_but_for_its_name_is_rejected(pytester: pytest.Pytester) -> None:
    rule = 'send_case = "failed"\nrecipients = ["team@example.com"]\n'
    pytester.makefile(
        ".toml",
        **{"rp-bts": f'[[rules]]\nname = "a"\n{rule}[[rules]]\nname = "b"\n{rule}'},
    )
    pytester.makepyfile("def test_bad():\n    assert 0\n")
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the tests still run
    result.stdout.fnmatch_lines(
        ["*rp-bts config error: *rp-bts.toml: rules[[]*b*[]]: rule 'b' is identical to rule 'a'*"]
    )
    assert not (pytester.path / ".rp-bts" / "outbox").exists()
