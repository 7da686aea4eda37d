"""Editing config files: comments and layout survive; edits are validated before writing."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from rp_bts_agent.config import load_config
from rp_bts_agent.config_edit import (
    add_integration,
    edit_integration,
    remove_integration,
    reset,
    unlink,
)
from rp_bts_agent.config_types import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = """\
# Shop's rp-bts settings: reviewed by QA.
project = "shop"   # shown in subjects

launch = "nightly"

# Defects from the nightly run.
[[integrations]]
kind = "jira"            # the tracker
name = "Shop defects"
url = "https://jira.example.com"
issue_type = "Defect"    # posted as defects
fields = { priority = "High" }

# The team's mailbox.
[[integrations]]
kind = "email"
name = "Team mail"
host = "smtp.example.com"  # relay
port = 587
"""

GLOBAL = """\
[[integrations]]
kind = "jira"
name = "Corp Jira"
url = "https://jira.corp.example.com"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "rp-bts.toml"
    path.write_text(PROJECT, encoding="utf-8")
    return path


@pytest.fixture
def global_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin" / "global.toml"
    path.parent.mkdir()
    path.write_text(GLOBAL, encoding="utf-8")
    return path


@pytest.fixture
def no_global(tmp_path: Path) -> Path:
    return tmp_path / "no-global.toml"


def names(root: Path, global_file: Path) -> list[tuple[str, str]]:
    config = load_config(root, global_file=global_file, environ={})
    return [(i.name, i.source) for i in config.integrations]


def test_add_appends_and_keeps_everything_else_byte_for_byte(
    project: Path, no_global: Path
) -> None:
    notes = add_integration(
        project,
        {
            "kind": "jira",
            "name": "Shop tasks",
            "url": "https://jira.example.com",
            "issue_type": "Task",
            "fields": {"labels": ["triage"]},
            "password": "${JIRA_TOKEN}",
        },
        scope="project",
        global_file=no_global,
    )
    text = project.read_text()
    assert text.startswith(PROJECT + "\n[[integrations]]\n")
    assert 'fields = {labels = ["triage"]}' in text
    assert notes == [f"added jira integration 'Shop tasks' to {project}"]
    added = tomllib.loads(text)["integrations"][2]
    assert added["issue_type"] == "Task"
    assert added["password"] == "${JIRA_TOKEN}"  # written as given, never filled


def test_edit_changes_only_the_edited_lines(project: Path, no_global: Path) -> None:
    edit_integration(
        project,
        "Team mail",
        {"port": 2525, "security": "ssl"},
        global_file=no_global,
    )
    before = PROJECT.splitlines()
    after = project.read_text().splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=False) if a != b]
    assert changed == [("port = 587", "port = 2525")]
    assert after[len(before) :] == ['security = "ssl"']


def test_edit_dotted_key_sets_one_field_and_none_deletes(project: Path, no_global: Path) -> None:
    edit_integration(
        project,
        "Shop defects",
        {"fields.components": ["Checkout"], "issue_type": None},
        global_file=no_global,
    )
    text = project.read_text()
    defects = tomllib.loads(text)["integrations"][0]
    assert defects["fields"] == {"priority": "High", "components": ["Checkout"]}
    assert "issue_type" not in defects
    assert "# Defects from the nightly run.\n" in text
    assert 'kind = "jira"            # the tracker\n' in text


def test_remove_drops_the_table_and_keeps_the_rest(project: Path, no_global: Path) -> None:
    remove_integration(project, "Team mail", global_file=no_global)
    assert project.read_text() == PROJECT.split("\n# The team's mailbox.")[0]
    remove_integration(project, "Shop defects", global_file=no_global)
    assert project.read_text() == PROJECT.split("\n# Defects from the nightly run.")[0]


def test_remove_moves_no_comment_from_one_table_to_another(project: Path, no_global: Path) -> None:
    remove_integration(project, "Shop defects", global_file=no_global)
    head, _, rest = PROJECT.partition("\n# Defects from the nightly run.")
    assert project.read_text() == head + "\n# The team's mailbox." + rest.split("mailbox.")[1]


def test_remove_unknown_name_says_what_exists(project: Path, no_global: Path) -> None:
    with pytest.raises(ConfigError) as info:
        remove_integration(project, "Nope", global_file=no_global)
    assert "Shop defects, Team mail" in info.value.message
    assert project.read_text() == PROJECT


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "red"}, 'integrations["Team mail"].colour'),
        ({"security": "tls"}, 'integrations["Team mail"].security'),
        ({"port": "many"}, 'integrations["Team mail"].port'),
        ({"name": "Shop defects"}, 'integrations["Shop defects"].name'),
    ],
)
def test_invalid_edit_raises_and_leaves_the_file_untouched(
    project: Path, no_global: Path, change: dict[str, object], key: str
) -> None:
    before = project.stat()
    with pytest.raises(ConfigError) as info:
        edit_integration(project, "Team mail", change, global_file=no_global)
    assert info.value.key == key
    assert info.value.file == str(project)
    assert project.read_text() == PROJECT
    assert project.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in project.parent.iterdir()) == ["rp-bts.toml"]


def test_invalid_add_leaves_the_file_untouched(project: Path, no_global: Path) -> None:
    with pytest.raises(ConfigError, match="unknown kind 'jura'"):
        add_integration(
            project, {"kind": "jura", "name": "X"}, scope="project", global_file=no_global
        )
    with pytest.raises(ConfigError, match="duplicate name 'Team mail'"):
        add_integration(
            project, {"kind": "local", "name": "Team mail"}, scope="project", global_file=no_global
        )
    assert project.read_text() == PROJECT


def test_edit_needs_no_variables_to_be_set(project: Path, no_global: Path) -> None:
    edit_integration(project, "Team mail", {"port": "${SMTP_PORT}"}, global_file=no_global)
    assert 'port = "${SMTP_PORT}"' in project.read_text()


def test_removing_the_default_integration_is_refused(project: Path, no_global: Path) -> None:
    project.write_text('default_integration = "Team mail"\n' + PROJECT)
    before = project.read_text()
    with pytest.raises(ConfigError) as info:
        remove_integration(project, "Team mail", global_file=no_global)
    assert info.value.key == "default_integration"
    assert project.read_text() == before


def test_adding_a_kind_global_has_unlinks_it(
    project: Path, global_file: Path, tmp_path: Path
) -> None:
    assert names(tmp_path, global_file)[0] == ("Corp Jira", "global")  # linked: project's ignored
    notes = add_integration(
        project,
        {"kind": "jira", "name": "Shop tasks", "issue_type": "Task"},
        scope="project",
        global_file=global_file,
    )
    assert any(n.startswith("unlinked jira:") for n in notes)
    assert tomllib.loads(project.read_text())["unlinked"] == ["jira"]
    assert names(tmp_path, global_file) == [
        ("Shop defects", "project"),
        ("Team mail", "project"),
        ("Shop tasks", "project"),
    ]
    text = project.read_text()
    assert text.startswith('# Shop\'s rp-bts settings: reviewed by QA.\nproject = "shop"   #')


def test_unlink_then_reset_to_global(project: Path, global_file: Path, tmp_path: Path) -> None:
    notes = unlink(project, "jira", global_file=global_file)
    assert notes == ["unlinked jira: this project now uses only its own jira integrations"]
    assert ("Shop defects", "project") in names(tmp_path, global_file)
    assert unlink(project, "jira", global_file=global_file) == [
        f"jira is already unlinked in {project}"
    ]

    notes = reset(project, "jira", global_file=global_file)
    assert notes[0] == "deleted the project's jira integrations: Shop defects"
    text = project.read_text()
    assert "Shop defects" not in text
    assert "unlinked" not in text
    assert "# The team's mailbox.\n" in text
    assert names(tmp_path, global_file) == [("Corp Jira", "global"), ("Team mail", "project")]


def test_global_file_edits_refuse_unlinked(global_file: Path) -> None:
    with pytest.raises(ConfigError, match="project setting"):
        unlink(global_file, "jira", global_file=global_file)
    add_integration(
        global_file, {"kind": "jira", "name": "Corp tasks"}, scope="global", global_file=global_file
    )
    assert "unlinked" not in global_file.read_text()  # the admin's file never unlinks


def test_pyproject_gets_a_tool_rp_bts_table(tmp_path: Path, global_file: Path) -> None:
    original = textwrap.dedent(
        """\
        [project]
        name = "shop"   # the distribution

        [tool.ruff]
        line-length = 100
        """
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(original)
    notes = add_integration(
        pyproject, {"kind": "jira", "name": "Shop bugs"}, scope="project", global_file=global_file
    )
    assert any("unlinked jira" in n for n in notes)
    text = pyproject.read_text()
    assert text.startswith(original)
    data = tomllib.loads(text)
    assert data["tool"]["rp_bts"]["unlinked"] == ["jira"]
    assert data["tool"]["rp_bts"]["integrations"][0]["name"] == "Shop bugs"
    assert data["tool"]["ruff"] == {"line-length": 100}
    assert names(tmp_path, global_file) == [("Shop bugs", "project")]

    reset(pyproject, "jira", global_file=global_file)
    assert tomllib.loads(pyproject.read_text())["tool"]["rp_bts"] == {}
    assert names(tmp_path, global_file) == [("Corp Jira", "global")]


def test_invalid_pyproject_edit_names_the_tool_key(tmp_path: Path, no_global: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.rp_bts]\nproject = "shop"\n')
    with pytest.raises(ConfigError) as info:
        add_integration(
            pyproject,
            {"kind": "email", "name": "M", "port": "x"},
            scope="project",
            global_file=no_global,
        )
    assert info.value.key == 'tool.rp_bts.integrations["M"].port'
    assert pyproject.read_text() == '[tool.rp_bts]\nproject = "shop"\n'


def test_new_file_is_created(tmp_path: Path, no_global: Path) -> None:
    path = tmp_path / "new" / "rp-bts.toml"
    add_integration(path, {"kind": "local", "name": "L"}, scope="project", global_file=no_global)
    assert path.read_text() == '[[integrations]]\nkind = "local"\nname = "L"\n'


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_write_keeps_the_file_mode(project: Path, no_global: Path) -> None:
    project.chmod(0o600)
    edit_integration(project, "Team mail", {"port": 25}, global_file=no_global)
    assert stat.S_IMODE(project.stat().st_mode) == 0o600


def test_literal_secret_added_to_a_project_is_warned_about(project: Path, no_global: Path) -> None:
    notes = edit_integration(project, "Team mail", {"password": "hunter22"}, global_file=no_global)
    assert any("project files get committed" in n for n in notes)


def test_broken_toml_is_reported_and_kept(project: Path, no_global: Path) -> None:
    project.write_text(PROJECT + "oops = \n")
    with pytest.raises(ConfigError) as info:
        unlink(project, "rally", global_file=no_global)
    assert info.value.key == "line 20, column 8"
    assert project.read_text() == PROJECT + "oops = \n"
