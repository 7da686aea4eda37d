"""The config loader: global vs project resolution, validation, ``${VAR}``, paths, file safety."""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path

import pytest

from rp_bts_agent.config import load_config
from rp_bts_agent.config_types import Config, ConfigError
from rp_bts_agent.integrations.clarity import ClaritySettings, ProjectTab, SyncSettings
from rp_bts_agent.redact import Redactor, redact_url_credentials
from rp_bts_agent.rootdir import default_global_file, find_root, project_config_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")

GLOBAL_JIRA = """
[[integrations]]
kind = "jira"
name = "Corp Jira"
url = "https://jira.corp.example.com"
project_key = "CORP"
password = "${CORP_TOKEN}"

[[integrations]]
kind = "email"
name = "Corp mail"
host = "smtp.corp.example.com"
"""


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    if mode is not None:
        path.chmod(mode)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    return project


@pytest.fixture
def global_file(tmp_path: Path) -> Path:
    return write(tmp_path / "admin" / "global.toml", GLOBAL_JIRA, 0o644)


def load(root: Path, global_file: Path | None = None, **environ: str) -> Config:
    env = {"CORP_TOKEN": "corp-secret-token", **environ}
    return load_config(root, global_file=global_file or root / "no-global.toml", environ=env)


def error(root: Path, global_file: Path | None = None, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(root, global_file, **environ)
    return info.value


# --- resolution: ReportPortal's global and project settings ---------------------------------


def test_missing_files_give_an_empty_config(root: Path) -> None:
    config = load(root)
    assert config.integrations == ()
    assert config.root == str(root.resolve())
    assert config.project_file == ""
    assert config.global_file == ""


def test_a_project_uses_global_integrations_by_default(root: Path, global_file: Path) -> None:
    write(root / "rp-bts.toml", 'project = "shop"\n', 0o644)
    config = load(root, global_file)
    jira = config.integration("Corp Jira")
    assert jira is not None
    assert jira.source == "global"
    assert jira.file == str(global_file)
    assert jira.settings.password == "corp-secret-token"
    assert [i.name for i in config.integrations] == ["Corp Jira", "Corp mail"]
    assert config.project == "shop"
    assert config.global_file == str(global_file)


def test_unlinked_kind_uses_only_the_projects_own(root: Path, global_file: Path) -> None:
    write(
        root / "rp-bts.toml",
        """
        unlinked = ["jira"]

        [[integrations]]
        kind = "jira"
        name = "Shop bugs"
        url = "https://jira.shop.example.com"
        """,
    )
    config = load(root, global_file)
    assert [(i.name, i.source) for i in config.of_kind("jira")] == [("Shop bugs", "project")]
    # other kinds stay linked
    assert [(i.name, i.source) for i in config.of_kind("email")] == [("Corp mail", "global")]
    assert config.unlinked == ("jira",)


def test_unlinked_project_keeps_its_own_when_the_admin_changes_global(
    root: Path, global_file: Path
) -> None:
    write(
        root / "rp-bts.toml",
        """
        unlinked = ["jira"]
        [[integrations]]
        kind = "jira"
        name = "Shop bugs"
        """,
    )
    assert [i.name for i in load(root, global_file).of_kind("jira")] == ["Shop bugs"]
    write(
        global_file,
        GLOBAL_JIRA
        + """
        [[integrations]]
        kind = "jira"
        name = "New corp Jira"
        url = "https://jira2.corp.example.com"
        """,
    )
    assert [i.name for i in load(root, global_file).of_kind("jira")] == ["Shop bugs"]


def test_linked_project_integration_is_ignored_with_a_warning(
    root: Path, global_file: Path
) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "jira"\nname = "Shop bugs"\n')
    config = load(root, global_file)
    assert [i.name for i in config.of_kind("jira")] == ["Corp Jira"]
    (warning,) = config.warnings
    assert "Shop bugs" in warning
    assert "rp-bts integrations unlink jira" in warning


def test_project_integration_of_a_kind_global_lacks_is_used(root: Path, global_file: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "rally"\nname = "Shop rally"\n')
    config = load(root, global_file)
    rally = config.integration("Shop rally")
    assert rally is not None
    assert rally.source == "project"
    assert rally.settings.url == "https://rally1.rallydev.com"  # the kind's default
    assert config.warnings == ()


def test_several_integrations_on_one_tracker_project(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        """
        default_integration = "Shop tasks"

        [[integrations]]
        kind = "jira"
        name = "Shop defects"
        url = "https://jira.example.com"
        project_key = "SHOP"
        issue_type = "Defect"
        fields = { priority = "High", components = ["Checkout"] }

        [[integrations]]
        kind = "jira"
        name = "Shop tasks"
        url = "https://jira.example.com"
        project_key = "SHOP"
        issue_type = "Task"
        fields = { labels = ["triage"] }
        include = ["logs"]
        """,
    )
    config = load(root)
    defects, tasks = config.of_kind("jira")
    assert (defects.settings.project_key, defects.settings.issue_type) == ("SHOP", "Defect")
    assert defects.settings.fields == {"priority": "High", "components": ["Checkout"]}
    assert (tasks.settings.project_key, tasks.settings.issue_type) == ("SHOP", "Task")
    assert tasks.settings.fields == {"labels": ["triage"]}
    assert tasks.settings.include == ("logs",)
    assert config.default_integration == "Shop tasks"


def test_same_name_in_both_files_is_an_error_only_when_both_are_used(
    root: Path, global_file: Path
) -> None:
    project = write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "rally"\nname = "Corp Jira"\n',
    )
    err = error(root, global_file)
    assert err.file == str(project)
    assert err.key == 'integrations["Corp Jira"].name'
    # unlinking jira drops the global one, so the names no longer clash
    write(project, 'unlinked = ["jira"]\n' + project.read_text())
    assert [i.source for i in load(root, global_file).of_kind("rally")] == ["project"]


def test_global_default_integration_is_dropped_when_its_kind_is_unlinked(
    root: Path, global_file: Path
) -> None:
    write(global_file, 'default_integration = "Corp Jira"\n' + GLOBAL_JIRA)
    assert load(root, global_file).default_integration == "Corp Jira"
    write(root / "rp-bts.toml", 'unlinked = ["jira"]\n')
    assert load(root, global_file).default_integration == ""


def test_rules_project_replaces_global_rule_of_the_same_name(root: Path, global_file: Path) -> None:
    write(
        global_file,
        GLOBAL_JIRA
        + """
        [[rules]]
        name = "nightly"
        send_case = "always"
        [[rules]]
        name = "release"
        launch_names = ["release"]
        """,
    )
    write(
        root / "rp-bts.toml",
        """
        [[rules]]
        name = "nightly"
        enabled = "${RULES_ON}"
        send_case = "more_10"
        recipients = ["team@example.com", "OWNER"]
        attributes_operator = "or"
        """,
    )
    rules = {r.name: r for r in load(root, global_file, RULES_ON="no").rules}
    assert set(rules) == {"nightly", "release"}
    assert rules["nightly"].send_case == "more_10"
    assert rules["nightly"].enabled is False
    assert rules["nightly"].recipients == ("team@example.com", "OWNER")
    assert rules["release"].launch_names == ("release",)


# --- one clear line per bad config ------------------------------------------------------------

BAD = [
    pytest.param('project = "shop\n', "line 1, column 16", "invalid TOML", id="syntax"),
    pytest.param(
        '[[integrations]]\nkind = "jura"\nname = "X"\n',
        'integrations["X"].kind',
        "unknown kind 'jura'; use one of jira, rally, clarity, sauce, email, local",
        id="unknown-kind",
    ),
    pytest.param(
        '[[integrations]]\nname = "X"\n',
        'integrations["X"].kind',
        "missing kind; use one of jira",
        id="missing-kind",
    ),
    pytest.param(
        '[[integrations]]\nkind = "local"\nname = "X"\n[[integrations]]\nkind = "jira"\n'
        'name = "X"\n',
        'integrations["X"].name',
        "duplicate name 'X'",
        id="duplicate-name",
    ),
    pytest.param("colour = 1\n", "colour", "unknown key 'colour' at the top level", id="top-key"),
    pytest.param(
        '[[integrations]]\nkind = "email"\nname = "M"\nprot = 25\n',
        'integrations["M"].prot',
        "did you mean 'port'?",
        id="integration-key",
    ),
    pytest.param(
        '[[integrations]]\nkind = "sauce"\nname = "S"\nproject_key = "P"\n',
        'integrations["S"].project_key',
        "unknown key 'project_key' for kind sauce",
        id="key-of-another-kind",
    ),
    pytest.param(
        '[[rules]]\nname = "r"\nsendcase = "failed"\n',
        'rules["r"].sendcase',
        "unknown key 'sendcase' in a rule",
        id="rule-key",
    ),
    pytest.param(
        '[[integrations]]\nkind = "jira"\nname = "J"\ninclude = "logs"\n',
        'integrations["J"].include',
        "expected a list of strings, got a string ('logs')",
        id="string-for-list",
    ),
    pytest.param(
        '[[integrations]]\nkind = "email"\nname = "M"\nport = "smtp"\n',
        'integrations["M"].port',
        "expected an integer",
        id="bad-int",
    ),
    pytest.param(
        '[[integrations]]\nkind = "jira"\nname = "J"\non_closed = "ignore"\n',
        'integrations["J"].on_closed',
        "unknown value 'ignore'; use one of new, reopen",
        id="on_closed",
    ),
    pytest.param(
        '[[integrations]]\nkind = "email"\nname = "M"\nsecurity = "tls"\n',
        'integrations["M"].security',
        "use one of none, starttls, ssl",
        id="security",
    ),
    pytest.param(
        '[[integrations]]\nkind = "jira"\nname = "J"\nauth = "api-key"\n',
        'integrations["J"].auth',
        "use one of basic, pat, oauth1",
        id="tracker-auth",
    ),
    pytest.param(
        '[[integrations]]\nkind = "email"\nname = "M"\nauth = "basic"\n',
        'integrations["M"].auth',
        "expected true or false",
        id="email-auth",
    ),
    pytest.param(
        '[[integrations]]\nkind = "sauce"\nname = "S"\ndata_center = "eu"\n',
        'integrations["S"].data_center',
        "use one of us-west-1, eu-central-1, us-east-4",
        id="data_center",
    ),
    pytest.param(
        '[[rules]]\nname = "r"\nsend_case = "sometimes"\n',
        'rules["r"].send_case',
        "use one of always, failed, to_investigate",
        id="send_case",
    ),
    pytest.param(
        '[[rules]]\nname = "r"\nattributes_operator = "xor"\n',
        'rules["r"].attributes_operator',
        "use one of and, or",
        id="attributes_operator",
    ),
    pytest.param(
        '[[integrations]]\nkind = "email"\nname = "Team mail"\nhost = "smtp.example.com"\n'
        '[[rules]]\nname = "r"\nemail = "Ops mail"\n',
        'rules["r"].email',
        "no e-mail integration named 'Ops mail' (e-mail integrations: 'Team mail')",
        id="email",
    ),
    pytest.param(
        '[[rules]]\nname = "a"\nrecipients = ["x@example.com"]\n'
        '[[rules]]\nname = "b"\nrecipients = ["x@example.com"]\nenabled = true\n',
        'rules["b"]',
        "rule 'b' is identical to rule 'a'",
        id="identical-rules",
    ),
    pytest.param(
        'default_integration = "Nope"\n[[integrations]]\nkind = "local"\nname = "L"\n',
        "default_integration",
        "'Nope' names no integration in use; use one of: L",
        id="default_integration",
    ),
    pytest.param('unlinked = ["jirra"]\n', "unlinked", "unknown value 'jirra'", id="unlinked-kind"),
    pytest.param(
        '[[integrations]]\nkind = "jira"\nname = "J"\npassword = "${NOT_SET_ANYWHERE}"\n',
        'integrations["J"].password',
        "${NOT_SET_ANYWHERE} is not set; export NOT_SET_ANYWHERE",
        id="missing-var",
    ),
    pytest.param(
        '[[integrations]]\nkind = "jira"\nname = "J"\nfields = { team = "${NO_TEAM}" }\n',
        'integrations["J"].fields.team',
        "${NO_TEAM} is not set",
        id="missing-var-inline-table",
    ),
    pytest.param('integrations = "jira"\n', "integrations", "expected an array", id="not-aot"),
]


@pytest.mark.parametrize(("text", "key", "message"), BAD)
def test_bad_config_is_one_line_naming_file_and_key(
    root: Path, text: str, key: str, message: str
) -> None:
    project = write(root / "rp-bts.toml", text)
    err = error(root)
    assert err.file == str(project)
    assert err.key == key
    assert message in err.message
    line = str(err)
    assert "\n" not in line
    assert str(project) in line
    assert key in line


def test_unlinked_in_the_global_file_is_an_error(root: Path, global_file: Path) -> None:
    write(global_file, 'unlinked = ["jira"]\n')
    err = error(root, global_file)
    assert (err.file, err.key) == (str(global_file), "unlinked")
    assert "project setting" in err.message


def test_unused_integration_is_still_type_checked(root: Path, global_file: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "jira"\nname = "J"\nverify_tls = 3\n')
    err = error(root, global_file)
    assert err.key == 'integrations["J"].verify_tls'


def test_unused_integration_needs_no_variables(root: Path, global_file: Path) -> None:
    write(
        root / "rp-bts.toml",
        'unlinked = ["jira"]\n[[integrations]]\nkind = "local"\nname = "L"\n',
    )
    # the global jira's ${CORP_TOKEN} is not used by this project, so it need not be set
    config = load_config(root, global_file=global_file, environ={})
    assert [i.name for i in config.integrations] == ["Corp mail", "L"]


# --- ${VAR}, coercion, paths ------------------------------------------------------------------


def test_variables_from_environment_and_env_file_environment_wins(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        """
        [[integrations]]
        kind = "jira"
        name = "J"
        url = "https://${JIRA_HOST}/jira"
        username = "${JIRA_USER}"
        password = "${JIRA_TOKEN}"
        fields = { components = ["${COMPONENT}"] }
        """,
    )
    env_file = write(
        root / "secrets.env",
        "JIRA_USER=from-file\nJIRA_TOKEN=token-from-file\nCOMPONENT=Checkout\n",
        0o600,
    )
    config = load_config(
        root,
        global_file=root / "none.toml",
        env_file=env_file,
        environ={"JIRA_HOST": "jira.example.com", "JIRA_USER": "from-env"},
    )
    jira = config.integrations[0]
    assert jira.settings.url == "https://jira.example.com/jira"
    assert jira.settings.username == "from-env"
    assert jira.settings.password == "token-from-file"
    assert jira.settings.fields == {"components": ["Checkout"]}
    assert jira.refs["password"] == "${JIRA_TOKEN}"
    assert config.warnings == ()


def test_explicit_env_file_must_exist(root: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(root, env_file=root / ".env.ci", global_file=root / "g.toml", environ={})
    assert info.value.file == str(root / ".env.ci")
    assert "file not found" in info.value.message


def test_dot_env_beside_the_root_is_read_by_default(root: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "rally"\nname = "R"\napi_key = "${K}"\n')
    write(root / ".env", "K=rally-key-123\n", 0o600)
    assert load(root).integrations[0].settings.api_key == "rally-key-123"


def test_numbers_and_booleans_are_coerced_after_substitution(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        """
        [[integrations]]
        kind = "email"
        name = "M"
        host = "${SMTP_HOST}"
        port = "${SMTP_PORT}"
        auth = "${SMTP_AUTH}"
        verify_tls = "${SMTP_VERIFY}"
        security = "${SMTP_SECURITY}"
        allow_plaintext_auth = "${SMTP_AUTH}"

        [[integrations]]
        kind = "email"
        name = "Plain"
        security = "ssl"
        """,
    )
    config = load(
        root,
        SMTP_HOST="mail.example.com",
        SMTP_PORT="2525",
        SMTP_AUTH="true",
        SMTP_VERIFY="false",
        SMTP_SECURITY="none",
    )
    mail, plain = config.integrations
    assert (
        mail.settings.host,
        mail.settings.port,
        mail.settings.auth,
        mail.settings.verify_tls,
    ) == (
        "mail.example.com",
        2525,
        True,
        False,
    )
    assert mail.settings.security == "none"
    assert (plain.settings.port, plain.settings.auth) == (465, False)


def test_enum_is_checked_after_substitution(root: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "email"\nname = "M"\nsecurity = "${S}"\n')
    err = error(root, S="tls")
    assert err.key == 'integrations["M"].security'


def test_paths_are_relative_to_the_file_that_names_them(root: Path, tmp_path: Path) -> None:
    admin = write(
        tmp_path / "admin" / "global.toml",
        """
        [[integrations]]
        kind = "clarity"
        name = "Clarity"
        url = "https://clarity.example.com"
        auth = "oauth1"
        consumer_key = "rp-bts"
        private_key_file = "keys/clarity.pem"
        request_token_url = "https://clarity.example.com/oauth/request"
        ca_file = "/etc/ssl/corp.pem"
        [integrations.sync]
        period = "${SYNC_PERIOD}"
        [[integrations.sync.projects]]
        code = "PR1001"
        push = true
        """,
    )
    write(
        root / "rp-bts.toml",
        """
        [[integrations]]
        kind = "jira"
        name = "J"
        ca_file = "certs/corp-ca.pem"
        [[integrations]]
        kind = "local"
        name = "Custom"
        path = "${DB_DIR}/bugs.db"
        """,
    )
    config = load(root, admin, DB_DIR="data", SYNC_PERIOD="900")
    clarity = config.integration("Clarity")
    jira = config.integration("J")
    local = config.integration("Custom")
    assert clarity is not None and jira is not None and local is not None
    assert clarity.settings.private_key_file == str(tmp_path / "admin" / "keys" / "clarity.pem")
    assert clarity.settings.ca_file == "/etc/ssl/corp.pem"
    sync = clarity.settings_as(ClaritySettings).sync  # typed, a ${VAR} period made a number
    assert sync == SyncSettings(900, projects=(ProjectTab("PR1001", push=True),))
    assert clarity.settings.request_token_url == "https://clarity.example.com/oauth/request"
    assert jira.settings.ca_file == str(root.resolve() / "certs" / "corp-ca.pem")
    assert local.settings.path == str(root.resolve() / "data" / "bugs.db")


def test_local_tracker_defaults_under_the_root(root: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "local"\nname = "L"\n')
    assert load(root).integrations[0].settings.path == str(
        root.resolve() / ".rp-bts" / "tracker.db"
    )


def test_pyproject_tool_rp_bts(root: Path) -> None:
    pyproject = write(
        root / "pyproject.toml",
        """
        [project]
        name = "shop"

        [tool.rp_bts]
        project = "shop"
        launch = "nightly"

        [[tool.rp_bts.integrations]]
        kind = "local"
        name = "L"
        """,
    )
    config = load(root)
    assert (config.project, config.launch) == ("shop", "nightly")
    assert config.integrations[0].file == str(pyproject)
    write(pyproject, '[tool.rp_bts]\n[[tool.rp_bts.integrations]]\nkind = "jura"\nname = "X"\n')
    err = error(root)
    assert err.key == 'tool.rp_bts.integrations["X"].kind'


def test_explicit_project_file_may_be_a_pyproject(root: Path, tmp_path: Path) -> None:
    elsewhere = write(
        tmp_path / "other" / "pyproject.toml",
        '[tool.rp_bts]\nowner = "qa@example.com"\n',
    )
    config = load_config(root, project_file=elsewhere, global_file=root / "x.toml", environ={})
    assert config.owner == "qa@example.com"
    with pytest.raises(ConfigError, match="file not found"):
        load_config(root, project_file=root / "typo.toml", environ={})


# --- secrets in files -------------------------------------------------------------------------


def test_literal_secret_in_project_file_warns(root: Path, global_file: Path) -> None:
    write(
        global_file,
        '[[integrations]]\nkind = "sauce"\nname = "S"\naccess_key = "literal-in-global"\n',
        0o600,
    )
    write(
        root / "rp-bts.toml",
        """
        [[integrations]]
        kind = "rally"
        name = "R"
        api_key = "literal-key"
        [[integrations]]
        kind = "jira"
        name = "J"
        token = "${JIRA_PAT}"
        """,
        0o644,
    )
    config = load(root, global_file, JIRA_PAT="pat-value")
    (warning,) = config.warnings
    assert 'integrations["R"].api_key' in warning
    assert "project files get committed; use ${VAR}" in warning
    assert "literal-key" not in warning


@posix_only
def test_world_writable_file_with_literal_secret_is_refused(root: Path) -> None:
    project = write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "email"\nname = "M"\npassword = "hunter22"\n',
        0o666,
    )
    err = error(root)
    assert (err.file, err.key) == (str(project), 'integrations["M"].password')
    assert "anyone can write" in err.message
    assert "hunter22" not in str(err)


@posix_only
def test_world_writable_file_with_references_only_is_read(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "email"\nname = "M"\npassword = "${P}"\n',
        0o666,
    )
    assert load(root, P="pw-from-env").integrations[0].settings.password == "pw-from-env"


@posix_only
def test_group_writable_file_with_literal_secret_warns(root: Path, global_file: Path) -> None:
    write(
        global_file,
        '[[integrations]]\nkind = "sauce"\nname = "S"\naccess_key = "sauce-key-1"\n',
        0o664,
    )
    config = load(root, global_file)
    (warning,) = config.warnings
    assert str(global_file) in warning
    assert "group can write" in warning
    assert config.integrations[0].settings.access_key == "sauce-key-1"


@posix_only
def test_world_writable_env_file_is_refused_when_it_gives_a_value(root: Path) -> None:
    write(root / "rp-bts.toml", '[[integrations]]\nkind = "rally"\nname = "R"\napi_key = "${K}"\n')
    env_file = write(root / ".env", "K=rally-key-123\n", 0o666)
    err = error(root)
    assert (err.file, err.key) == (str(env_file), "K")
    # the environment wins, so the file is not read for K
    assert load(root, K="from-env").integrations[0].settings.api_key == "from-env"


# --- rootdir -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rp-bts.toml", ""),
        ("pytest.ini", "[pytest]\n"),
        (".pytest.ini", "[pytest]\n"),
        ("pyproject.toml", "[tool.pytest.ini_options]\n"),
        ("pyproject.toml", "[tool.rp_bts]\n"),
        ("tox.ini", "[tox]\n[pytest]\n"),
        ("setup.cfg", "[tool:pytest]\n"),
    ],
)
def test_find_root_like_pytest(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    deep = tmp_path / "tests" / "unit"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path


def test_find_root_skips_files_without_their_section(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    inner = tmp_path / "pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[tool.ruff]\n")
    (inner / "tox.ini").write_text("[tox]\n")
    assert find_root(inner) == tmp_path  # setup.py is the fallback
    assert find_root(inner, inner / "tox.ini") == inner


def test_find_root_falls_back_to_start(tmp_path: Path) -> None:
    assert find_root(tmp_path) == tmp_path


def test_project_config_file(tmp_path: Path) -> None:
    assert project_config_file(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\n")
    assert project_config_file(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.rp_bts]\n")
    assert project_config_file(tmp_path) == tmp_path / "pyproject.toml"
    (tmp_path / "rp-bts.toml").write_text("")
    assert project_config_file(tmp_path) == tmp_path / "rp-bts.toml"


def test_default_global_file(tmp_path: Path) -> None:
    assert default_global_file({"RP_BTS_GLOBAL_CONFIG": str(tmp_path / "g.toml")}) == (
        tmp_path / "g.toml"
    )
    fallback = default_global_file({})
    assert fallback.name == "config.toml"
    assert "rp-bts" in fallback.parent.name


# --- redaction ---------------------------------------------------------------------------------


def test_redactor_masks_secrets_and_their_encoded_forms() -> None:
    redactor = Redactor(["s3cr3t/Token+1", "s3cr3t", "abc", ""])
    text = "token s3cr3t/Token+1 or s3cr3t, urlencoded s3cr3t%2FToken%2B1, abc stays"
    assert redactor.redact(text) == "token *** or ***, urlencoded ***, abc stays"
    for user in ("", "u:", "us:", "use:"):
        header = base64.b64encode(f"{user}s3cr3t/Token+1".encode()).decode()
        redacted = redactor.redact(f"Authorization: Basic {header}")
        assert "***" in redacted
        assert header not in redacted  # the secret's part of the encoding is gone


def test_redactor_masks_the_pieces_a_cut_leaves() -> None:
    redactor = Redactor(["ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"])
    # pytest shortens long values in an assertion to their head and tail
    text = "assert 'ghp_abcdefgh...z0123456789AB' == 'x'"
    assert redactor.redact(text) == "assert '***...***' == 'x'"
    # rp-bts keeps the tail of long output
    text = "ghp_abcdefghijkl\n[... 9 characters cut ...]\nuvwxyz0123456789AB\n"
    assert redactor.redact(text) == "***\n[... 9 characters cut ...]\n***\n"
    # a piece not at a cut, or shorter than 6 characters, stays
    text = "ghp_abcdefgh and 0123456789AB; ghp_a... ...89AB loading... done"
    assert redactor.redact(text) == text


def test_redactor_objects_and_no_secrets() -> None:
    redactor = Redactor(["p4ssw0rd"])
    value = {
        "password": "other-literal",
        "token": "${JIRA_TOKEN}",
        "log": ["login with p4ssw0rd", ("p4ssw0rd",)],
        "n": 3,
    }
    assert redactor.redact_obj(value) == {
        "password": "***",
        "token": "${JIRA_TOKEN}",
        "log": ["login with ***", ("***",)],
        "n": 3,
    }
    empty = Redactor([])
    assert not empty
    assert empty.redact("p4ssw0rd") == "p4ssw0rd"


def test_redact_url_credentials() -> None:
    assert (
        redact_url_credentials("https://bob:pa%40ss@jira.example.com:8443/x?token=abc&q=1#f")
        == "https://bob:***@jira.example.com:8443/x?token=***&q=1#f"
    )
    assert redact_url_credentials("https://jira.example.com/x?q=1") == (
        "https://jira.example.com/x?q=1"
    )


def test_a_login_without_tls_is_refused_unless_allowed(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "email"\nname = "M"\nsecurity = "none"\nauth = true\n',
    )
    err = error(root)
    assert err.key == 'integrations["M"].auth'
    assert "allow_plaintext_auth = true" in err.message


def test_a_sender_is_an_address_and_its_name_apart(root: Path) -> None:
    write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "email"\nname = "M"\nsender = "QA Bot <qa@example.com>"\n'
        '[[integrations]]\nkind = "email"\nname = "N"\nsender = "Report Portal"\n',
    )
    err = error(root)
    assert err.key == 'integrations["N"].sender'
    assert "sender_name" in err.message
    write(
        root / "rp-bts.toml",
        '[[integrations]]\nkind = "email"\nname = "M"\nsender = "QA Bot <qa@example.com>"\n',
    )
    (mail,) = load(root).integrations
    assert (mail.settings.sender, mail.settings.sender_name) == ("qa@example.com", "QA Bot")


# --- grouping, the storm guard, flaky tests and on_pass ---------------------------------------


def test_grouping_defaults(root: Path) -> None:
    config = load(root)
    assert (config.group_by, config.max_new_issues) == ("cause", 20)
    assert (config.storm_ratio, config.storm_min_tests) == (0.5, 20)
    assert (config.flaky, config.flaky_window, config.on_pass, config.on_pass_runs) == (
        "label",
        5,
        "comment",
        3,
    )


def test_grouping_keys_short_and_long_forms(root: Path, tmp_path: Path) -> None:
    admin = write(tmp_path / "admin.toml", 'on_pass = "resolve"\n[storm]\nmin_tests = 50\n')
    write(
        root / "rp-bts.toml",
        """
        group_by = "test"
        max_new_issues = "${MAX_NEW}"
        flaky = "skip"
        [storm]
        ratio = 0.3
        [on_pass]
        runs = 2
        """,
    )
    config = load(root, admin, MAX_NEW="7")
    assert (config.group_by, config.max_new_issues, config.flaky) == ("test", 7, "skip")
    # the project's keys of a table over the global file's, key by key
    assert (config.storm_ratio, config.storm_min_tests) == (0.3, 50)
    assert (config.on_pass, config.on_pass_runs) == ("resolve", 2)


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ('group_by = "module"', "group_by", "unknown value 'module'; use one of cause, test"),
        ("[storm]\nratio = 2", "storm.ratio", "expected a number from 0 to 1"),
        ("[storm]\nratoi = 0.2", "storm.ratoi", "did you mean 'ratio'?"),
        ('on_pass = "close"', "on_pass.action", "use one of comment, resolve"),
        ("[on_pass]\nruns = 0", "on_pass.runs", "expected at least 1"),
        ("storm = 3", "storm", "expected a table, got a number (3)"),
        ("max_new_issues = 0", "max_new_issues", "expected at least 1"),
    ],
)
def test_bad_grouping_keys_are_one_line(root: Path, text: str, key: str, says: str) -> None:
    write(root / "rp-bts.toml", text + "\n")
    exc = error(root)
    assert exc.key == key and says in str(exc)
