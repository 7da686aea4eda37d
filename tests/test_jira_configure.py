"""``rp-bts integrations configure NAME``: issue types, fields, and predefined fields checked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from jira_server import DC_USER, PASSWORD, USER, RunningJira

from rp_bts_agent.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = """\
# our Jira
[[integrations]]
kind = "jira"
name = "Shop bugs"  # keep me
url = "{url}"
project_key = "SHOP"
username = "${{JIRA_USER}}"
password = "${{JIRA_TOKEN}}"
"""


@pytest.fixture
def project(jira: RunningJira, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JIRA_USER", USER if jira.state.cloud else DC_USER)
    monkeypatch.setenv("JIRA_TOKEN", PASSWORD)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "no-global.toml"))
    (tmp_path / "rp-bts.toml").write_text(PROJECT.format(url=jira.url), encoding="utf-8")
    return tmp_path


def configure(root: Path, *args: str) -> int:
    return main(["--root", str(root), "integrations", "configure", "Shop bugs", *args])


def test_lists_types_and_fields_and_stores(
    project: Path, jira: RunningJira, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "5b10a2844c20165700ede21g" if jira.state.cloud else DC_USER
    code = configure(
        project,
        "--issue-type",
        "Task",
        "--field",
        "priority=High",
        "--field",
        'components=["Checkout"]',
        "--field",
        "Severity=S2",
        "--field",
        f"assignee={user}",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "issue types of SHOP: Bug, Task" in out
    assert "  * summary (Summary)" in out
    assert "    priority (Priority): Highest | High | Medium | Low" in out
    text = (project / "rp-bts.toml").read_text(encoding="utf-8")
    assert text.startswith("# our Jira\n") and "# keep me" in text
    stored = tomllib.loads(text)["integrations"][0]
    assert stored["issue_type"] == "Task"
    assert stored["fields"] == {
        "priority": "High",
        "components": ["Checkout"],
        "customfield_10060": "S2",
        "assignee": user,
    }


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("priority=Urgent", "'Urgent' is not allowed (allowed: Highest, High, Medium, Low)"),
        ('components=["Nope"]', "'Nope' is not allowed"),
        ("Severity=S9", "'S9' is not allowed (allowed: S1, S2)"),
        ('labels=["two words"]', "label 'two words' must be one word"),
        ("colour=red", "colour: no such field on Bug"),
        ("assignee=ghost", "no user 'ghost'"),
    ],
)
def test_rejects_bad_fields(
    project: Path, capsys: pytest.CaptureFixture[str], field: str, problem: str
) -> None:
    before = (project / "rp-bts.toml").read_text(encoding="utf-8")
    assert configure(project, "--field", field) == 1
    assert problem in capsys.readouterr().out
    assert (project / "rp-bts.toml").read_text(encoding="utf-8") == before


def test_unknown_issue_type(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert configure(project, "--issue-type", "Epic") == 1
    assert "no issue type 'Epic'" in capsys.readouterr().out


def test_stored_fields_are_filed(project: Path, jira: RunningJira, tmp_path: Any) -> None:
    assert configure(project, "--field", "Severity=S1", "--field", "priority=Low") == 0
    from rp_bts_agent.config import load_config
    from rp_bts_agent.pipeline import open_tracker
    from rp_bts_agent.tracker import Body, IssueDraft

    config = load_config(project)
    integration = config.integration("Shop bugs")
    assert integration is not None
    tracker = open_tracker(integration)
    tracker.create(
        IssueDraft("s", Body(()), "fp-1", fields=integration.settings.fields, labels=("fp-1",))
    )
    tracker.close()
    fields = jira.state.issues["SHOP-1"]["fields"]
    assert fields["customfield_10060"] == {"value": "S1"}
    assert fields["priority"] == {"name": "Low"}
