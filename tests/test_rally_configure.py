"""``rp-bts integrations configure`` and ``test`` for Rally: types, attributes, fields checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rally_server import (
    API_KEY,
    OTHER_USER,
    RunningRally,
)

from rp_bts_agent.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAME = "Shop defects"


@pytest.fixture
def project(rally: RunningRally, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rally.login_env(monkeypatch)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "no-global.toml"))
    text = "# our Rally\n" + rally.integration_toml().replace(
        'name = "Shop defects"', 'name = "Shop defects"  # keep me'
    )
    (tmp_path / "rp-bts.toml").write_text(text, encoding="utf-8")
    return tmp_path


def configure(root: Path, *args: str) -> int:
    return main(["--root", str(root), "integrations", "configure", NAME, *args])


def test_lists_types_and_attributes_and_stores_fields(
    project: Path, rally: RunningRally, capsys: pytest.CaptureFixture[str]
) -> None:
    code = configure(
        project,
        "--field",
        "Severity=Major Problem",
        "--field",
        "priority=High Attention",
        "--field",
        "Found In=1.4.2",
        "--field",
        f"Owner={OTHER_USER}",
        "--field",
        "c_Component=Cart",
        "--field",
        "Blocked=false",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "work item types in Shop WS: Defect, Hierarchical Requirement, Task, Test Case" in out
    assert "attributes of Defect (* required):" in out
    assert (
        "    Severity (Severity, rating): None | Crash/Data Loss | Major Problem | Minor Problem"
        " | Cosmetic" in out
    )
    assert "    State (State, state): Submitted | Open | Fixed | Closed" in out
    assert "    Environment (Environment, rating): None | Development | Test" in out
    assert "    FoundInBuild (Found In, string)\n" in out
    assert "    Owner (Owner, object)\n" in out
    assert "    c_Component (Component, string): Checkout | Cart | Search" in out
    assert "FormattedID" not in out  # read-only
    text = (project / "rp-bts.toml").read_text(encoding="utf-8")
    assert text.startswith("# our Rally\n") and "# keep me" in text
    stored = tomllib.loads(text)["integrations"][0]
    assert stored["issue_type"] == "Defect"
    assert stored["fields"] == {
        "Severity": "Major Problem",
        "Priority": "High Attention",
        "FoundInBuild": "1.4.2",
        "Owner": OTHER_USER,
        "c_Component": "Cart",
        "Blocked": False,
    }
    assert rally.state.defects() == []


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("Severity=Catastrophic", "Severity: 'Catastrophic' is not allowed (allowed: None,"),
        ("c_Component=Kitchen", "c_Component: 'Kitchen' is not allowed"),
        ("Colour=red", "Colour: no such attribute on Defect"),
        ("Owner=ghost@example.com", "Owner: no user 'ghost@example.com'"),
        ("FormattedID=DE1", "FormattedID: is read-only"),
        ("Name=x", "Name: is filled by rp-bts"),
        ("Blocked=maybe", "Blocked: takes true or false"),
    ],
)
def test_rejects_bad_fields(
    project: Path, capsys: pytest.CaptureFixture[str], field: str, problem: str
) -> None:
    before = (project / "rp-bts.toml").read_text(encoding="utf-8")
    assert configure(project, "--field", field) == 1
    assert f"FAILED: {problem}" in capsys.readouterr().out
    assert (project / "rp-bts.toml").read_text(encoding="utf-8") == before


def test_other_types_are_shown_not_stored(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert configure(project, "--issue-type", "Epic") == 1
    assert "FAILED: no type 'Epic'" in capsys.readouterr().out
    assert configure(project, "--issue-type", "Task") == 1
    out = capsys.readouterr().out
    assert "attributes of Task (* required):" in out
    assert "FAILED: rp-bts files Defects in Rally; Task is listed for reference" in out


def test_stored_fields_are_filed(project: Path, rally: RunningRally) -> None:
    assert configure(project, "--field", "Severity=Cosmetic", "--field", "Found In=2.0") == 0
    from rp_bts_agent.config import load_config
    from rp_bts_agent.pipeline import open_tracker
    from rp_bts_agent.tracker import Body, IssueDraft

    integration = load_config(project).integration(NAME)
    assert integration is not None
    tracker = open_tracker(integration)
    tracker.create(IssueDraft("s", Body(()), "rpbts1-x", fields=integration.settings.fields))
    tracker.close()
    defect = rally.state.defect("DE1")
    assert (defect["Severity"], defect["FoundInBuild"]) == ("Cosmetic", "2.0")


def test_integrations_test_through_the_cli(
    project: Path, rally: RunningRally, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(project), "integrations", "test", NAME]) == 0
    out = capsys.readouterr().out
    assert "logged in as QA Bot (api-key); workspace 'Shop WS'; project 'Shop'" in out
    rally.state.api_keys_disabled = True
    assert main(["--root", str(project), "integrations", "test", NAME]) != 0
    out = capsys.readouterr().out
    assert "login refused (HTTP 401, api-key)" in out
    assert "API keys turned off" in out
    assert API_KEY not in out
