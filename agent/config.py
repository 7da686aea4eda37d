"""Read, validate and resolve rp-bts configuration: the global file and the project file.

Resolution follows ReportPortal: for each kind a project uses the global integrations (linked,
the default) unless it lists the kind in ``unlinked``; then it uses only its own. The schema is
one table per kind, so the loader and the editor (``config_edit``) validate with the same code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, final

from .config_types import KINDS, SECRET_KEYS, Config, ConfigError, Integration, Rule
from .rootdir import default_global_file, project_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "INTEGRATION_KEYS",
    "RULE_KEYS",
    "TOP_KEYS",
    "ConfigFile",
    "Entry",
    "Env",
    "Key",
    "Scope",
    "check_section",
    "load_config",
    "parse_toml",
    "read_config_file",
    "resolve",
    "section_of",
]

Scope = Literal["global", "project"]
ValueType = Literal["str", "path", "int", "bool", "strs", "table"]


class Key(NamedTuple):
    """What one config key holds: its type, its allowed values, the Integration field it fills.

    This and the other internal records here are NamedTuples, not dataclasses: the plugin loads
    this module at every ``--rp-bts`` start, and a NamedTuple class is made in a tenth of the time.
    """

    type: ValueType = "str"
    choices: tuple[str, ...] = ()
    field: str = ""


_STR: Final = Key()
_TLS: Final = {"verify_tls": Key("bool"), "ca_file": Key("path")}
_NAMED: Final = {"kind": _STR, "name": _STR}
_TRACKER: Final = {
    **_NAMED,
    "url": _STR,
    "project_key": _STR,
    "username": _STR,
    "password": _STR,
    "issue_type": _STR,
    "fields": Key("table"),
    "include": Key("strs", ("logs", "attachments", "comments")),
    # how many lines of the log tail go into an issue (ReportPortal's log quantity)
    "log_lines": Key("int"),
    # seconds to wait for each answer; a tracker slower than this is retried, then queued
    "timeout": Key("int"),
    "on_closed": Key(choices=("new", "reopen")),
    **_TLS,
}
_OAUTH1: Final = {
    "consumer_key": _STR,
    "private_key_file": Key("path"),
    "access_token": _STR,
    "access_token_secret": _STR,
}

#: kind -> key -> what it holds. Keys that Integration has no field for land in ``extra``.
INTEGRATION_KEYS: Final[Mapping[str, Mapping[str, Key]]] = {
    "jira": {
        **_TRACKER,
        "auth": Key(choices=("basic", "pat", "oauth1")),
        "token": _STR,
        **_OAUTH1,
    },
    "rally": {
        **_TRACKER,
        "workspace": _STR,
        "auth": Key(choices=("api-key", "basic")),
        "api_key": _STR,
    },
    "clarity": {
        **_TRACKER,
        "auth": Key(choices=("basic", "session", "api-key", "oauth1")),
        "api_key": _STR,
        "client_id": _STR,
        **_OAUTH1,
        "request_token_url": _STR,
        "authorize_url": _STR,
        "access_token_url": _STR,
        "sync": Key("table"),
    },
    "sauce": {
        **_NAMED,
        "username": _STR,
        "access_key": _STR,
        "data_center": Key(choices=("us-west-1", "eu-central-1", "us-east-4")),
        "api_url": _STR,
        "driver_fixture": _STR,
        # job assets to download and attach to posted issues, each at most asset_cap bytes
        "assets": Key("strs"),
        "asset_cap": Key("int"),
        **_TLS,
    },
    "email": {
        **_NAMED,
        "host": _STR,
        "port": Key("int"),
        "security": Key(choices=("none", "starttls", "ssl")),
        # a bool here, unlike the trackers' auth method: SMTP either logs in or does not.
        "auth": Key("bool", field="smtp_auth"),
        "username": _STR,
        "password": _STR,
        "sender": _STR,
        **_TLS,
    },
    # a tracker too: key prefix, issue type, fields and the closed-issue policy apply to it
    "local": {
        **{k: v for k, v in _TRACKER.items() if k not in ("username", "password", *_TLS)},
        "path": Key("path"),
    },
}

#: values a kind gets when its file does not say.
_KIND_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "jira": {"auth": "basic"},
    "rally": {"url": "https://rally1.rallydev.com", "auth": "api-key"},
    "clarity": {"auth": "basic"},
}
_SMTP_PORTS: Final = {"none": 25, "starttls": 587, "ssl": 465}

RULE_KEYS: Final[Mapping[str, Key]] = {
    "name": _STR,
    "enabled": Key("bool"),
    "send_case": Key(
        choices=("always", "failed", "to_investigate", "more_10", "more_20", "more_50")
    ),
    "recipients": Key("strs"),
    "launch_names": Key("strs"),
    "attributes": Key("strs"),
    "attributes_operator": Key(choices=("and", "or")),
}

#: top-level scalar keys; ``integrations`` and ``rules`` are arrays of tables, checked apart.
TOP_KEYS: Final[Mapping[str, Key]] = {
    "project": _STR,
    "launch": _STR,
    "owner": _STR,
    "unlinked": Key("strs", KINDS),
    "default_integration": _STR,
    # parametrized tests failing alike share one issue unless this keeps their ids apart
    "fingerprint_params": Key("bool"),
    # seconds the agent may spend filing at session end; the rest is kept for rp-bts flush
    "time_budget": Key("int"),
}

_INTEGRATION_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Integration))
_TYPE_NAMES: Final[Mapping[ValueType, str]] = {
    "str": "a string",
    "path": "a path (a string)",
    "int": "an integer",
    "bool": "true or false",
    "strs": "a list of strings",
    "table": "a table",
}
_BOOL_WORDS: Final = {"true": True, "yes": True, "on": True, "1": True}
_BOOL_WORDS.update(dict.fromkeys(("false", "no", "off", "0"), False))
_INT_TEXT: Final = re.compile(r"\s*[-+]?\d+\s*")
_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOML_POSITION: Final = re.compile(r"^(.*?)\s*\(at (.+)\)$")


class Entry(NamedTuple):
    """One ``[[integrations]]`` or ``[[rules]]`` table and the key path that names it in errors."""

    table: Mapping[str, Any]
    loc: str
    kind: str = ""


class ConfigFile(NamedTuple):
    """One config file, checked on its own: keys, kinds, names; values are checked on resolve."""

    path: Path
    scope: Scope
    top: Mapping[str, Any]
    integrations: tuple[Entry, ...]
    rules: tuple[Entry, ...]
    #: ``st_mode`` of the file, 0 when unknown; literal secrets in a writable file are refused.
    mode: int = 0
    prefix: str = ""


def _describe(value: object) -> str:
    """A TOML value's type as the user wrote it, for 'expected X, got Y'."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _label(name: object, index: int) -> str:
    return f"[{json.dumps(name)}]" if isinstance(name, str) and name else f"[{index}]"


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """TOML text to a dict; a syntax error names the line and column as its key."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        reason, where = (match.group(1), match.group(2)) if match else (str(exc), "")
        raise ConfigError(path, where, f"invalid TOML: {reason}; fix the syntax") from None


def section_of(data: Mapping[str, Any], path: Path) -> tuple[Mapping[str, Any], str]:
    """The rp-bts keys of a parsed file: all of it, or ``[tool.rp_bts]`` of a pyproject.toml."""
    if path.name != "pyproject.toml":
        return data, ""
    tool = data.get("tool", {})
    section = tool.get("rp_bts", {}) if isinstance(tool, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(path, "tool.rp_bts", "must be a table; write [tool.rp_bts]")
    return section, "tool.rp_bts."


def _unknown(key: str, allowed: Iterable[str], where: str) -> str:
    import difflib  # only to suggest a fix for a typo: not on every run's start-up

    close = difflib.get_close_matches(key, list(allowed), n=1)
    fix = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(sorted(allowed))}"
    return f"unknown key {key!r} {where}; {fix}"


def _entries(
    section: Mapping[str, Any], name: str, path: Path, prefix: str
) -> list[tuple[int, dict[str, Any]]]:
    value = section.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(
            path, prefix + name, f"expected an array of tables ([[{name}]]), got {_describe(value)}"
        )
    return list(enumerate(value))


def check_section(
    section: Mapping[str, Any], path: Path, scope: Scope, *, mode: int = 0, prefix: str = ""
) -> ConfigFile:
    """Check a file's structure: known keys, known kinds, unique names. Values come on resolve."""
    allowed_top = {*TOP_KEYS, "integrations", "rules"} - (
        {"unlinked"} if scope == "global" else set()
    )
    for key in section:
        if key == "unlinked" and scope == "global":
            raise ConfigError(
                path, prefix + key, "unlinked is a project setting; remove it from the global file"
            )
        if key not in allowed_top:
            raise ConfigError(path, prefix + key, _unknown(key, allowed_top, "at the top level"))

    integrations: list[Entry] = []
    seen: dict[str, str] = {}
    for index, table in _entries(section, "integrations", path, prefix):
        name = table.get("name")
        loc = f"{prefix}integrations{_label(name, index)}"
        kind = table.get("kind")
        if kind not in KINDS:
            message = "missing kind" if kind is None else f"unknown kind {kind!r}"
            raise ConfigError(path, f"{loc}.kind", f"{message}; use one of {', '.join(KINDS)}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(path, f"{loc}.name", "every integration needs a unique name")
        if name in seen:
            raise ConfigError(
                path, f"{loc}.name", f"duplicate name {name!r} (also {seen[name]}); rename one"
            )
        seen[name] = loc
        schema = INTEGRATION_KEYS[kind]
        for key in table:
            if key not in schema:
                raise ConfigError(path, f"{loc}.{key}", _unknown(key, schema, f"for kind {kind}"))
        integrations.append(Entry(table, loc, kind))

    rules: list[Entry] = []
    rule_names: set[str] = set()
    for index, table in _entries(section, "rules", path, prefix):
        name = table.get("name")
        loc = f"{prefix}rules{_label(name, index)}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(path, f"{loc}.name", "every rule needs a unique name")
        if name in rule_names:
            raise ConfigError(path, f"{loc}.name", f"duplicate rule name {name!r}; rename one")
        rule_names.add(name)
        for key in table:
            if key not in RULE_KEYS:
                raise ConfigError(path, f"{loc}.{key}", _unknown(key, RULE_KEYS, "in a rule"))
        rules.append(Entry(table, loc))
    return ConfigFile(path, scope, section, tuple(integrations), tuple(rules), mode, prefix)


def read_config_file(path: Path, scope: Scope) -> ConfigFile | None:
    """A config file, checked; ``None`` when it does not exist."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read the file ({exc})") from None
    section, prefix = section_of(parse_toml(text, path), path)
    return check_section(section, path, scope, mode=mode, prefix=prefix)


@final
class Env:
    """``${VAR}`` values: the environment first, then the env file (which never overrides)."""

    def __init__(self, environ: Mapping[str, str], env_file: Path | None) -> None:
        self._environ = environ
        self._file = env_file
        self._values: Mapping[str, str | None] = {}
        self._mode = 0
        if env_file is not None:
            from dotenv import dotenv_values  # only when there is an env file to read

            self._values = dotenv_values(env_file)
            self._mode = env_file.stat().st_mode
        self.warnings: list[str] = []

    def get(self, name: str, file: Path, loc: str) -> str:
        if name in self._environ:
            return self._environ[name]
        value = self._values.get(name)
        if value is None:
            where = f"to {self._file}" if self._file is not None else "to a .env file"
            raise ConfigError(file, loc, f"${{{name}}} is not set; export {name} or add it {where}")
        assert self._file is not None  # only the env file gives values not in the environment
        if _writable_by(self._mode, stat.S_IWOTH):
            raise ConfigError(
                self._file, name, f"anyone can write this file; run chmod o-w {self._file}"
            )
        if _writable_by(self._mode, stat.S_IWGRP):
            self._warn(f"{self._file}: {name}: its group can write this file; chmod g-w it")
        return value

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def _writable_by(mode: int, bit: int) -> bool:
    """Permission bits only mean something on POSIX; elsewhere a file is never refused."""
    return os.name == "posix" and bool(mode & bit)


class _Unset:
    """A value whose ``${VAR}`` is not filled (editing): its type is checked once it is."""


_UNSET: Final = _Unset()


def _fill(value: Any, env: Env | None, file: Path, loc: str) -> Any:
    """``${VAR}`` filled in every string, however deep; ``_UNSET`` when ``env`` is None."""
    if isinstance(value, str):
        if _VAR.search(value) is None:
            return value
        if env is None:
            return _UNSET
        return _VAR.sub(lambda m: env.get(m.group(1), file, loc), value)
    if isinstance(value, list):
        filled = [_fill(v, env, file, f"{loc}[{i}]") for i, v in enumerate(value)]
        return [v for v in filled if v is not _UNSET]
    if isinstance(value, dict):
        items = {k: _fill(v, env, file, f"{loc}.{k}") for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _UNSET}
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, str):
        return _BOOL_WORDS.get(value.strip().lower())
    return value if isinstance(value, bool) else None


def _as_strs(value: Any) -> tuple[str, ...] | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else None


#: type -> converter of a filled value, ``None`` when the value cannot be that type.
_CONVERT: Final[Mapping[ValueType, Callable[[Any], Any]]] = {
    "str": lambda v: v if isinstance(v, str) else None,
    "path": lambda v: v if isinstance(v, str) else None,
    "int": _as_int,
    "bool": _as_bool,
    "strs": _as_strs,
    "table": lambda v: v if isinstance(v, dict) else None,
}


def _coerce(value: Any, key: Key, file: Path, loc: str) -> Any:
    """A filled value as its key's type: numbers and booleans may arrive as ``${VAR}`` text."""
    result = _CONVERT[key.type](value)
    if result is None:
        raise ConfigError(file, loc, f"expected {_TYPE_NAMES[key.type]}, got {_describe(value)}")
    for item in result if key.type == "strs" else (result,):
        if key.choices and item not in key.choices:
            raise ConfigError(
                file, loc, f"unknown value {item!r}; use one of {', '.join(key.choices)}"
            )
    if key.type == "path" and result:
        result = str((file.parent / Path(result).expanduser()).resolve())
    return result


def _values(
    table: Mapping[str, Any], schema: Mapping[str, Key], file: Path, loc: str, env: Env | None
) -> dict[str, Any]:
    """Every key of a table filled and typed; keys whose ``${VAR}`` is not filled are left out."""
    out: dict[str, Any] = {}
    for key, raw in table.items():
        where = f"{loc}.{key}" if loc else key
        filled = _fill(raw, env, file, where)
        if filled is not _UNSET:
            out[key] = _coerce(filled, schema[key], file, where)
    return out


def _check_secrets(entry: Entry, source: ConfigFile, warnings: list[str]) -> None:
    """Literal credentials: refused in a world-writable file, warned about in a project file."""
    for key, raw in entry.table.items():
        if key not in SECRET_KEYS or not isinstance(raw, str) or not raw or _VAR.search(raw):
            continue
        where = f"{entry.loc}.{key}"
        if _writable_by(source.mode, stat.S_IWOTH):
            raise ConfigError(
                source.path,
                where,
                f"a literal secret in a file anyone can write; use ${{VAR}} "
                f"or run chmod o-w {source.path}",
            )
        if _writable_by(source.mode, stat.S_IWGRP):
            warnings.append(
                f"{source.path}: {where}: a literal secret in a file its group can write; "
                "use ${VAR} or chmod g-w the file"
            )
        if source.scope == "project":
            warnings.append(
                f"{source.path}: {where}: a literal secret; project files get committed; "
                "use ${VAR} and set VAR in the environment or the env file"
            )


def _integration(entry: Entry, source: ConfigFile, env: Env | None, root: Path) -> Integration:
    schema = INTEGRATION_KEYS[entry.kind]
    values = {**_KIND_DEFAULTS.get(entry.kind, {})}
    values.update(_values(entry.table, schema, source.path, entry.loc, env))
    if entry.kind == "email" and "port" not in values:
        values["port"] = _SMTP_PORTS[values.get("security", "starttls")]
    if entry.kind == "local" and not values.get("path"):
        values["path"] = str(root / ".rp-bts" / "tracker.db")
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        name = schema[key].field or key
        (fields if name in _INTEGRATION_FIELDS else extra)[name] = value
    refs = {
        k: v for k, v in entry.table.items() if isinstance(v, str) and _VAR.search(v) is not None
    }
    return Integration(**fields, source=source.scope, file=str(source.path), extra=extra, refs=refs)


def _rule(entry: Entry, source: ConfigFile, env: Env | None) -> Rule:
    return Rule(**_values(entry.table, RULE_KEYS, source.path, entry.loc, env))


def resolve(
    root: Path,
    project: ConfigFile | None,
    global_: ConfigFile | None,
    env: Env | None,
) -> Config:
    """The project's view: each kind from global (linked) or from the project (unlinked).

    With ``env=None`` (editing) ``${VAR}`` values are left unfilled and only the rest is typed.
    """
    empty = ConfigFile(root / "rp-bts.toml", "project", {}, (), ())
    proj = project or empty
    glob = global_ or ConfigFile(root / "global.toml", "global", {}, (), ())
    warnings: list[str] = []

    top = {
        f.scope: _values(_scalars(f.top), TOP_KEYS, f.path, f.prefix.rstrip("."), env)
        for f in (glob, proj)
    }
    unlinked: tuple[str, ...] = top["project"].get("unlinked", ())
    #: kinds the project takes from the global file: those it has and the project did not unlink.
    from_global = {e.kind for e in glob.integrations} - set(unlinked)

    used: list[tuple[Entry, ConfigFile]] = []
    for entry, source in [(e, glob) for e in glob.integrations] + [
        (e, proj) for e in proj.integrations
    ]:
        if (entry.kind in from_global) == (source is glob):
            used.append((entry, source))
            continue
        if source is proj:
            warnings.append(
                f"{proj.path}: {entry.loc}: ignored, the global file {glob.path} has "
                f"{entry.kind} integrations; run `rp-bts integrations unlink {entry.kind}` "
                "to use the project's own"
            )
        _integration(entry, source, None, root)  # unused: still type-checked, never filled

    integrations: list[Integration] = []
    by_name: dict[str, Integration] = {}
    for entry, source in used:
        _check_secrets(entry, source, warnings)
        integration = _integration(entry, source, env, root)
        if integration.name in by_name:
            raise ConfigError(
                source.path,
                f"{entry.loc}.name",
                f"duplicate name {integration.name!r}: {by_name[integration.name].file} "
                "has an integration of that name too; rename one",
            )
        by_name[integration.name] = integration
        integrations.append(integration)

    rules = _rules(proj, glob, env)

    global_names = [str(e.table["name"]) for e in glob.integrations]
    _check_default(glob, top["global"].get("default_integration"), global_names)
    default = top["project"].get("default_integration")
    _check_default(proj, default, list(by_name))
    if default is None:
        # the global default applies while the project still uses it (its kind is linked).
        default = top["global"].get("default_integration")
        default = default if default in by_name else ""

    def pick(key: str) -> str:
        value = top["project"].get(key) or top["global"].get(key) or ""
        return str(value)

    if env is not None:
        warnings += env.warnings
    return Config(
        project=pick("project"),
        launch=pick("launch"),
        owner=pick("owner"),
        unlinked=unlinked,
        default_integration=default or "",
        fingerprint_params=bool(
            top["project"].get("fingerprint_params", top["global"].get("fingerprint_params"))
        ),
        time_budget=int(top["project"].get("time_budget", top["global"].get("time_budget", 60))),
        integrations=tuple(integrations),
        rules=rules,
        project_file=str(project.path) if project else "",
        global_file=str(global_.path) if global_ else "",
        root=str(root),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _check_default(source: ConfigFile, default: str | None, names: list[str]) -> None:
    if default and default not in names:
        raise ConfigError(
            source.path,
            f"{source.prefix}default_integration",
            f"{default!r} names no integration in use; use one of: {', '.join(names) or 'none'}",
        )


def _scalars(top: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in top.items() if k in TOP_KEYS}


def _rules(proj: ConfigFile, glob: ConfigFile, env: Env | None) -> tuple[Rule, ...]:
    """Global rules, each replaced by a project rule of the same name; identical rules refused."""
    own = {e.table["name"] for e in proj.rules}
    entries = [(e, glob) for e in glob.rules if e.table["name"] not in own]
    entries += [(e, proj) for e in proj.rules]
    rules: list[Rule] = []
    seen: dict[Rule, str] = {}
    for entry, source in entries:
        rule = _rule(entry, source, env)
        anonymous = dataclasses.replace(rule, name="")
        if anonymous in seen:
            raise ConfigError(
                source.path,
                entry.loc,
                f"rule {rule.name!r} is identical to rule {seen[anonymous]!r}; remove one",
            )
        seen[anonymous] = rule.name
        rules.append(rule)
    return tuple(rules)


def load_config(
    root: Path,
    *,
    project_file: Path | None = None,
    global_file: Path | None = None,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The resolved configuration of the project at ``root``.

    Missing files are fine (an empty config); a bad one raises ConfigError, one line.
    """
    environ = os.environ if environ is None else environ
    root = Path(root).resolve()
    if project_file is None:
        project_file = project_config_file(root)
    elif not project_file.is_file():
        raise ConfigError(project_file, "", "file not found; check the path given for the config")
    if global_file is None:
        global_file = default_global_file(environ)
    if env_file is None and (root / ".env").is_file():
        env_file = root / ".env"
    elif env_file is not None and not env_file.is_file():
        raise ConfigError(env_file, "", "file not found; check the path given for the env file")
    project = read_config_file(project_file, "project") if project_file else None
    global_ = read_config_file(global_file, "global")
    return resolve(root, project, global_, Env(environ, env_file))
