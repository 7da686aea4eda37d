"""``rp-bts integrations``: list (secrets masked), add, edit, remove, unlink, reset."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rp_bts_agent import _cli_integrations
from rp_bts_agent._cli_integrations import parse_setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GLOBAL = """\
[[integrations]]
kind = "jira"
name = "Corp Jira"
url = "https://jira.corp.example.com"
username = "${CORP_USER}"
password = "${CORP_TOKEN}"

[[integrations]]
kind = "sauce"
name = "Corp Sauce"
username = "corp"
access_key = "literal-sauce-key-123"
"""

PROJECT = """\
# project settings
project = "shop"

[[integrations]]
kind = "email"
name = "Team mail"
host = "smtp.example.com"
password = "${SMTP_PASSWORD}"
"""

SECRETS = {
    "CORP_USER": "corp-bot",
    "CORP_TOKEN": "corp-token-value-9876",
    "SMTP_PASSWORD": "smtp-password-5432",
}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "rp-bts.toml").write_text(PROJECT)
    admin = tmp_path / "admin"
    admin.mkdir()
    (admin / "global.toml").write_text(GLOBAL)
    (admin / "global.toml").chmod(0o600)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(admin / "global.toml"))
    return project


def run(root: Path, *argv: str) -> int:
    """The command as the main parser gives it: with its common options."""
    parser = argparse.ArgumentParser(prog="rp-bts")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--global-config", type=Path)
    parser.add_argument("--env-file", type=Path)
    _cli_integrations.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["--root", str(root), "integrations", *argv])
    code: int = args.func(args)
    return code


def listed(root: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()  # what earlier commands printed
    assert run(root, "list", "--json") == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


def test_list_json_has_source_and_file_and_no_secret(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(root, "list", "--json") == 0
    out = capsys.readouterr().out
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["Corp Jira"]["source"] == "global"
    assert rows["Corp Jira"]["file"] == str(root.parent / "admin" / "global.toml")
    assert rows["Team mail"]["source"] == "project"
    assert rows["Team mail"]["file"] == str(root / "rp-bts.toml")
    assert rows["Corp Jira"]["password"] == "${CORP_TOKEN}"
    assert rows["Corp Jira"]["username"] == "corp-bot"
    assert rows["Corp Sauce"]["access_key"] == "***"
    assert rows["Team mail"]["password"] == "${SMTP_PASSWORD}"
    assert rows["Team mail"]["auth"] is False
    for secret in ("corp-token-value-9876", "smtp-password-5432", "literal-sauce-key-123"):
        assert secret not in out


def test_list_table(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "rp-bts.toml").write_text(
        PROJECT + '\n[[integrations]]\nkind = "rally"\nname = "R"\nissue_type = "Defect"\n'
    )
    assert run(root, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "SOURCE", "URL/HOST", "ISSUE", "TYPE"]
    assert lines[1].split() == ["Corp", "Jira", "jira", "global", "https://jira.corp.example.com"]
    assert lines[3].split() == ["Team", "mail", "email", "project", "smtp.example.com:587"]
    assert lines[4].split() == ["R", "rally", "project", "https://rally1.rallydev.com", "Defect"]


def test_add_types_values_and_auto_unlinks(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        root,
        "add",
        "jira",
        "Shop bugs",
        "--set",
        "url=https://jira.shop.example.com",
        "--set",
        "project_key=SHOP",
        "--set",
        "password=${SHOP_TOKEN}",
        "--set",
        "verify_tls=false",
        "--set",
        'include=["logs"]',
        "--set",
        "fields.priority=High",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "unlinked jira" in out
    text = (root / "rp-bts.toml").read_text()
    assert text.startswith("# project settings\n")
    data = tomllib.loads(text)
    added = data["integrations"][-1]
    assert added == {
        "kind": "jira",
        "name": "Shop bugs",
        "url": "https://jira.shop.example.com",
        "project_key": "SHOP",
        "password": "${SHOP_TOKEN}",
        "verify_tls": False,
        "include": ["logs"],
        "fields": {"priority": "High"},
    }
    assert data["unlinked"] == ["jira"]


def test_add_to_the_global_file(root: Path) -> None:
    assert run(root, "add", "email", "Corp mail", "--set", "port=2525", "--global") == 0
    data = tomllib.loads((root.parent / "admin" / "global.toml").read_text())
    assert data["integrations"][-1] == {"kind": "email", "name": "Corp mail", "port": 2525}
    assert "Corp mail" not in (root / "rp-bts.toml").read_text()


def test_invalid_add_is_one_line_exit_2_and_no_change(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(root, "add", "email", "M", "--set", "security=tls") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"rp-bts: {root / 'rp-bts.toml'}: ")
    assert 'integrations["M"].security' in err
    assert "use one of none, starttls, ssl" in err
    assert (root / "rp-bts.toml").read_text() == PROJECT


def test_edit_set_and_unset(root: Path) -> None:
    assert run(root, "edit", "Team mail", "--set", "port=465", "--set", "security=ssl") == 0
    assert run(root, "edit", "Team mail", "--unset", "password") == 0
    table = tomllib.loads((root / "rp-bts.toml").read_text())["integrations"][0]
    assert table == {
        "kind": "email",
        "name": "Team mail",
        "host": "smtp.example.com",
        "port": 465,
        "security": "ssl",
    }


def test_edit_unknown_integration(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "edit", "Nope", "--set", "port=1") == 2
    assert "no such integration" in capsys.readouterr().err


def test_remove(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "remove", "Team mail") == 0
    assert [row["name"] for row in listed(root, capsys)] == ["Corp Jira", "Corp Sauce"]
    assert (root / "rp-bts.toml").read_text() == '# project settings\nproject = "shop"\n'


def test_unlink_and_reset(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "unlink", "sauce") == 0
    assert [row["name"] for row in listed(root, capsys)] == ["Corp Jira", "Team mail"]
    assert run(root, "add", "sauce", "Shop Sauce", "--set", "data_center=eu-central-1") == 0
    capsys.readouterr()
    assert [(r["name"], r["source"]) for r in listed(root, capsys)][-1] == (
        "Shop Sauce",
        "project",
    )

    assert run(root, "reset", "sauce") == 2  # stdin is not a terminal: no silent deletion
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert "Shop Sauce" in (root / "rp-bts.toml").read_text()

    assert run(root, "reset", "sauce", "--yes") == 0
    assert "deleted the project's sauce integrations: Shop Sauce" in capsys.readouterr().out
    rows = listed(root, capsys)
    assert ("Corp Sauce", "global") in [(r["name"], r["source"]) for r in rows]
    assert "unlinked" not in (root / "rp-bts.toml").read_text()


def test_bad_config_on_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "rp-bts.toml").write_text('[[integrations]]\nkind = "jura"\nname = "X"\n')
    assert run(root, "list") == 2
    err = capsys.readouterr().err
    assert err == (
        f"rp-bts: {root / 'rp-bts.toml'}: integrations[\"X\"].kind: unknown kind 'jura'; "
        "use one of jira, rally, clarity, sauce, email, local\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port=587", ("port", 587)),
        ("verify_tls=false", ("verify_tls", False)),
        ('include=["logs", "comments"]', ("include", ["logs", "comments"])),
        ('fields={priority = "High"}', ("fields", {"priority": "High"})),
        ("url=https://jira.example.com", ("url", "https://jira.example.com")),
        ("project_key=SHOP", ("project_key", "SHOP")),
        ("password=${JIRA_TOKEN}", ("password", "${JIRA_TOKEN}")),
        ('issue_type="Bug"', ("issue_type", "Bug")),
        ("sender=QA Bot <qa@example.com>", ("sender", "QA Bot <qa@example.com>")),
        ("username=", ("username", "")),
        ("a=b=c", ("a", "b=c")),
    ],
)
def test_parse_setting(text: str, expected: tuple[str, object]) -> None:
    assert parse_setting(text) == expected


def test_parse_setting_needs_a_key() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_setting("port")


@pytest.mark.skipif(
    shutil.which("rp-bts") is None and not Path(sys.prefix, "bin", "rp-bts").exists(),
    reason="not installed",
)
def test_console_script(root: Path) -> None:
    script = shutil.which("rp-bts") or str(Path(sys.prefix, "bin", "rp-bts"))
    result = subprocess.run(
        [script, "--root", str(root), "integrations", "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [row["source"] for row in json.loads(result.stdout)] == ["global", "global", "project"]
    assert "corp-token-value-9876" not in result.stdout + result.stderr
