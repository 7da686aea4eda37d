"""Hostile test output through every sink at once (issue 6, point 5).

One real run of a suite whose failures carry Jira wiki markup, mentions, HTML and script, CR/LF
in parameter ids and messages, a 10 MB traceback, binary bytes and emoji, filed into the Jira
test server (every request checked against the contract), mailed through a real SMTP server
and written as the HTML report and results JSON. Each sink must show the text as text: no markup
of a test's making survives, no header is injected, and nothing grows without bound.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jira_server import RunningJira
from smtp_server import Server

SUITE = r"""
import pytest

MARKUP = "{panel}[~admin] *bold* [click|http://evil.example] |a|b| h1. big {noformat}end"
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_markup():
    print(MARKUP)
    assert MARKUP == HTML


@pytest.mark.parametrize("name", ["line\r\nBcc: evil@example.com", "emoji \U0001F4A5 \u202e"])
def test_crlf_ids(name):
    raise ValueError(name + "\r\nX-Injected: yes")


def test_ten_megabytes():
    raise AssertionError("{code}" + "x" * 10_000_000)


def test_binary(capsys):
    import sys
    sys.stdout.buffer.write(b"\x00\xff\xfe\x1b[31m binary")
    sys.stdout.flush()
    assert 0, "\x00\x07 bell and NUL"
"""

CONFIG = """
launch = "nightly\\r\\nBcc: evil@example.com {{panel}}[~admin] <script>x</script>"

{jira}
{mail}
[[rules]]
name = "team"
send_case = "failed"
recipients = ["team@example.com"]
"""

#: what the suite wrote that must never arrive as markup, tags or headers
RAW_MARKUP = ("{panel}", "[~admin]", "[click|", "|a|b|", "h1. big")
RAW_HTML = ("<script", "<img")


def test_hostile_output_is_text_in_every_sink(
    pytester: pytest.Pytester,
    jira: RunningJira,
    plain_server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jira.login_env(monkeypatch)
    config = CONFIG.format(jira=jira.integration_toml(), mail=plain_server.integration_toml())
    pytester.makefile(".toml", **{"rp-bts": config})
    pytester.makepyfile(test_hostile=SUITE)
    result = pytester.runpytest_subprocess("--rp-bts", "--rp-bts-report=report.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()

    # Jira: one issue per failure, one-line summaries, descriptions within Jira's limit, and
    # the test's markup escaped (its characters as entities), never live
    issues = list(jira.state.issues.values())
    assert len(issues) == 5
    for issue in issues:
        fields: dict[str, Any] = issue["fields"]
        assert "\n" not in fields["summary"] and "\r" not in fields["summary"]
        assert len(fields["summary"]) <= 255
        assert len(fields["description"]) <= 32_767
        outside = _outside_noformat(fields["description"])
        for raw in RAW_MARKUP:  # (Jira's wiki renderer shows HTML as text anyway)
            assert raw not in outside, (raw, issue["key"])
        assert "&#91;&#126;admin&#93;" in outside  # the launch name, shown as the text it is
    assert jira.state.violations == []
    attached = [a for files in jira.state.attachments.values() for a in files]
    ten_mb = [a for a in attached if a["size"] > 10_000_000]
    assert ten_mb, "the whole 10 MB traceback goes as an attachment"

    # mail: no injected header, the HTML part shows tags as text
    (mail,) = plain_server.inbox.received
    message = mail.message
    assert mail.rcpt_tos == ["team@example.com"]
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "\n" not in str(message["Subject"]).replace("\n ", "")
    html = message.get_body(("html",))
    assert html is not None
    page = html.get_content()
    for raw in RAW_HTML:
        assert raw not in page
    assert "&lt;script&gt;" in page

    # report: static HTML, tags as text, bounded
    report = (pytester.path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in report
    assert "<img src=x" not in report
    assert len(report) < 2_000_000

    # results JSON: valid, bounded, and each failure has its issue
    results = json.loads((pytester.path / ".rp-bts" / "results.json").read_text("utf-8"))
    assert (pytester.path / ".rp-bts" / "results.json").stat().st_size < 1_000_000
    failing = [r for r in results["results"] if r["outcome"] == "failed"]
    assert len(failing) == 5
    assert all(r["issues"] and r["issues"][0]["action"] == "created" for r in failing)


def _outside_noformat(text: str) -> str:
    """Jira interprets nothing inside ``{noformat}``: only the rest must be free of markup."""
    parts = text.split("{noformat}")
    return "".join(parts[0::2])
