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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, cast, final

from .config_types import Config, ConfigError, GroupBy, Integration, Rule, Source
from .keys import Key, ValueType
from .redact import WEAK_LENGTH, is_weak
from .rootdir import default_global_file, project_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "RULE_KEYS",
    "TABLE_KEYS",
    "TOP_KEYS",
    "ConfigFile",
    "Env",
    "Scope",
    "Table",
    "build_integration",
    "check_section",
    "integration_keys",
    "load_config",
    "parse_toml",
    "read_config_file",
    "resolve",
    "section_of",
]

Scope = Literal["global", "project"]

_STR: Final = Key()
#: every integration table has these, whatever its kind
_IDENTITY: Final = {"kind": _STR, "name": _STR}


def integration_keys(kind: str) -> Mapping[str, Key]:
    """The keys an integration of ``kind`` may have: its identity, then its kind's settings."""
    from . import kinds  # a config with no integration never loads a kind
    from .settings import keys_of

    return {**_IDENTITY, **keys_of(kinds.get(kind).settings)}


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
    "email": _STR,
}

#: top-level scalar keys; ``integrations`` and ``rules`` are arrays of tables, checked apart.
TOP_KEYS: Final[Mapping[str, Key]] = {
    "project": _STR,
    "launch": _STR,
    "owner": _STR,
    # checked against the installed kinds when read
    "unlinked": Key("strs"),
    "default_integration": _STR,
    # parametrized tests failing alike share one issue unless this keeps their ids apart
    "fingerprint_params": Key("bool"),
    # seconds the agent may spend filing at session end; the rest is kept for rp-bts flush
    "time_budget": Key("int"),
    # one issue per raise site outside the test module ("cause"), or one per test ("test")
    "group_by": Key(choices=("cause", "test")),
    # the storm guard: a run never opens more issues than this; the rest make one "run broken"
    "max_new_issues": Key("int"),
}

#: top-level tables and their keys; ``flaky`` and ``on_pass`` may also be just their action
#: (``on_pass = "resolve"`` is ``[on_pass] action = "resolve"``)
TABLE_KEYS: Final[Mapping[str, Mapping[str, Key]]] = {
    "storm": {"ratio": Key(help="a number from 0 to 1"), "min_tests": Key("int")},
    "flaky": {"action": Key(choices=("label", "skip", "file")), "window": Key("int")},
    "on_pass": {"action": Key(choices=("comment", "resolve")), "runs": Key("int")},
}

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


class Table(NamedTuple):
    """One ``[[integrations]]`` or ``[[rules]]`` table and the key path that names it in errors."""

    table: Mapping[str, Any]
    loc: str
    kind: str = ""


class ConfigFile(NamedTuple):
    """One config file, checked on its own: keys, kinds, names; values are checked on resolve."""

    path: Path
    scope: Scope
    top: Mapping[str, Any]
    integrations: tuple[Table, ...]
    rules: tuple[Table, ...]
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
    except RecursionError:  # arrays or tables nested thousands deep
        raise ConfigError(path, "", "invalid TOML: nested too deeply; fix the syntax") from None
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
    allowed_top = {*TOP_KEYS, *TABLE_KEYS, "integrations", "rules"} - (
        {"unlinked"} if scope == "global" else set()
    )
    for key in section:
        if key == "unlinked" and scope == "global":
            raise ConfigError(
                path, prefix + key, "unlinked is a project setting; remove it from the global file"
            )
        if key not in allowed_top:
            raise ConfigError(path, prefix + key, _unknown(key, allowed_top, "at the top level"))

    integrations: list[Table] = []
    seen: dict[str, str] = {}
    for index, table in _entries(section, "integrations", path, prefix):
        name = table.get("name")
        loc = f"{prefix}integrations{_label(name, index)}"
        kind = table.get("kind")
        from . import kinds  # only a config with integrations loads the registry

        if not isinstance(kind, str):
            message = "missing kind" if kind is None else f"unknown kind {kind!r}"
            raise ConfigError(
                path, f"{loc}.kind", f"{message}; use one of {', '.join(kinds.names())}"
            )
        try:
            schema = integration_keys(kind)
        except kinds.KindError as exc:
            raise ConfigError(path, f"{loc}.kind", str(exc)) from None
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(path, f"{loc}.name", "every integration needs a unique name")
        if name in seen:
            raise ConfigError(
                path, f"{loc}.name", f"duplicate name {name!r} (also {seen[name]}); rename one"
            )
        seen[name] = loc
        for key in table:
            if key not in schema:
                raise ConfigError(path, f"{loc}.{key}", _unknown(key, schema, f"for kind {kind}"))
        integrations.append(Table(table, loc, kind))

    rules: list[Table] = []
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
        rules.append(Table(table, loc))
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

    def __init__(
        self, environ: Mapping[str, str], env_file: Path | None, *, lenient: bool = False
    ) -> None:
        self._environ = environ
        #: leave a value whose variable is set nowhere unfilled (and name it in ``unset``)
        self.lenient = lenient
        self.unset: set[str] = set()
        self._file = env_file
        self._values: Mapping[str, str | None] = {}
        self._mode = 0
        if env_file is not None:
            from dotenv import dotenv_values  # only when there is an env file to read

            try:
                self._values = dotenv_values(env_file)
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    env_file, "", f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
                ) from None
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

    def has(self, name: str) -> bool:
        """Whether ``${name}`` has a value (the environment or the env file)."""
        return name in self._environ or self._values.get(name) is not None

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
        if env.lenient:
            missing = {m.group(1) for m in _VAR.finditer(value) if not env.has(m.group(1))}
            if missing:
                env.unset |= missing
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


def _table(source: ConfigFile, name: str, env: Env | None) -> dict[str, Any]:
    """One of :data:`TABLE_KEYS`, filled and typed; ratios are numbers from 0 to 1 and counts
    at least 1, so no setting can make the guard or the streak meaningless."""
    raw = source.top.get(name)
    if raw is None:
        return {}
    loc = source.prefix + name
    schema = TABLE_KEYS[name]
    if isinstance(raw, str) and "action" in schema:
        raw = {"action": raw}
    if not isinstance(raw, dict):
        either = " or a string" if "action" in schema else ""
        raise ConfigError(source.path, loc, f"expected a table{either}, got {_describe(raw)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{loc}.{key}"
        if key not in schema:
            raise ConfigError(source.path, where, _unknown(key, schema, f"in [{name}]"))
        filled = _fill(value, env, source.path, where)
        if filled is _UNSET:
            continue
        if key == "ratio":
            number = _as_float(filled)
            if number is None or not 0 <= number <= 1:
                raise ConfigError(
                    source.path, where, f"expected a number from 0 to 1, got {_describe(filled)}"
                )
            out[key] = number
            continue
        out[key] = _coerce(filled, schema[key], source.path, where)
        if schema[key].type == "int" and out[key] < 1:
            raise ConfigError(source.path, where, f"expected at least 1, got {out[key]}")
    return out


def _as_float(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def _check_secrets(entry: Table, source: ConfigFile, warnings: list[str]) -> None:
    """Literal credentials: refused in a world-writable file, warned about in a project file."""
    from .settings import url_password

    schema = integration_keys(entry.kind)
    for key, raw in entry.table.items():
        if not isinstance(raw, str) or not raw:
            continue
        # a password inside a URL is a secret like any other (issue 11, point 10)
        secret = raw if schema[key].secret else url_password(raw)
        if not secret or _VAR.search(secret):
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


def _integration(entry: Table, source: ConfigFile, env: Env | None, root: Path) -> Integration:
    """An integration with its kind's settings typed, completed and checked by the kind."""
    from . import kinds
    from .settings import SettingsContext

    settings_class = kinds.get(entry.kind).settings
    values = _values(entry.table, integration_keys(entry.kind), source.path, entry.loc, env)
    del values["kind"], values["name"]
    context = SettingsContext(root, source.path, entry.loc, frozenset(entry.table))
    values = settings_class.complete(values, context)
    refs = {
        k: v for k, v in entry.table.items() if isinstance(v, str) and _VAR.search(v) is not None
    }
    return Integration(
        kind=entry.kind,
        name=str(entry.table["name"]),
        settings=settings_class(**values),
        source=source.scope,
        file=str(source.path),
        refs=refs,
    )


def build_integration(
    kind: str,
    name: str,
    *,
    root: Path = Path("."),
    source: Source = "project",
    **values: Any,
) -> Integration:
    """An integration made in code (embedding, tests), completed as the loader completes one:
    ``values`` are typed already; ``root`` is where defaults such as ``.rp-bts/`` go."""
    from . import kinds
    from .settings import SettingsContext

    settings_class = kinds.get(kind).settings
    context = SettingsContext(Path(root), Path(root) / "rp-bts.toml", name)
    settings = settings_class(**settings_class.complete(dict(values), context))
    return Integration(kind=kind, name=name, settings=settings, source=source)


def _rule(entry: Table, source: ConfigFile, env: Env | None) -> Rule:
    rule = Rule(**_values(entry.table, RULE_KEYS, source.path, entry.loc, env))
    for number, recipient in enumerate(rule.recipients):
        if recipient != "OWNER" and not is_address(recipient):
            raise ConfigError(
                source.path,
                f"{entry.loc}.recipients[{number}]",
                f"{recipient!r} is not an e-mail address; use name@example.com or OWNER",
            )
    return rule


def is_address(text: str) -> bool:
    """``qa@example.com`` (a display name around it allowed): one @, a dot-free-or-not domain,
    no spaces in the address."""
    from email.utils import parseaddr

    address = parseaddr(text)[1]
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and " " not in address and address.count("@") == 1


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
    for f in (glob, proj):
        _check_budget(f, top[f.scope].get("time_budget"))
    unlinked: tuple[str, ...] = top["project"].get("unlinked", ())
    for kind in unlinked:
        from . import kinds

        if kind not in kinds.names():
            raise ConfigError(
                proj.path,
                f"{proj.prefix}unlinked",
                f"unknown value {kind!r}; use one of {', '.join(kinds.names())}",
            )
    #: kinds the project takes from the global file: those it has and the project did not unlink.
    from_global = {e.kind for e in glob.integrations} - set(unlinked)

    used: list[tuple[Table, ConfigFile]] = []
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

    rules = _rules(proj, glob, env, _mailers(integrations))

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

    def number(key: str, default: int) -> int:
        return int(top["project"].get(key, top["global"].get(key, default)))

    # the project's keys of a table over the global file's
    tables = {name: {**_table(glob, name, env), **_table(proj, name, env)} for name in TABLE_KEYS}
    if number("max_new_issues", 20) < 1:
        raise ConfigError(proj.path, f"{proj.prefix}max_new_issues", "expected at least 1")

    if env is not None:
        warnings += env.warnings
        warnings += [
            f"integration '{i.name}': a secret is shorter than {WEAK_LENGTH} characters or a "
            "plain word; it is masked only where it stands alone, never in pytest's own lines"
            for i in integrations
            if any(is_weak(s) for s in i.secrets())
        ]
    return Config(
        project=pick("project"),
        launch=pick("launch"),
        owner=pick("owner"),
        unlinked=unlinked,
        default_integration=default or "",
        fingerprint_params=bool(
            top["project"].get("fingerprint_params", top["global"].get("fingerprint_params"))
        ),
        time_budget=number("time_budget", 60),
        group_by=cast(GroupBy, pick("group_by") or "cause"),
        max_new_issues=number("max_new_issues", 20),
        storm_ratio=float(tables["storm"].get("ratio", 0.5)),
        storm_min_tests=int(tables["storm"].get("min_tests", 20)),
        flaky=tables["flaky"].get("action", "label"),
        flaky_window=int(tables["flaky"].get("window", 5)),
        on_pass=tables["on_pass"].get("action", "comment"),
        on_pass_runs=int(tables["on_pass"].get("runs", 3)),
        integrations=tuple(integrations),
        rules=rules,
        project_file=str(project.path) if project else "",
        global_file=str(global_.path) if global_ else "",
        root=str(root),
        warnings=tuple(dict.fromkeys(warnings)),
    )


#: the longest ``time_budget`` taken: a day; more is a typo (milliseconds?), not a budget
MAX_TIME_BUDGET: Final = 86_400


def _check_budget(source: ConfigFile, budget: int | None) -> None:
    """The run end's bound must be one (issue 11, point 3): at least a second, at most a day."""
    if budget is not None and not 1 <= budget <= MAX_TIME_BUDGET:
        raise ConfigError(
            source.path,
            f"{source.prefix}time_budget",
            f"{budget} is not a time budget; use whole seconds from 1 to {MAX_TIME_BUDGET}",
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


def _mailers(integrations: Sequence[Integration]) -> list[str]:
    """The names of the integrations that send mail."""
    if not integrations:
        return []
    from . import kinds  # only a config with integrations loads the registry

    return [i.name for i in integrations if kinds.get(i.kind).mail is not None]


def _rules(
    proj: ConfigFile, glob: ConfigFile, env: Env | None, mailers: Sequence[str]
) -> tuple[Rule, ...]:
    """Global rules, each replaced by a project rule of the same name; identical rules refused;
    a rule's ``email`` names one of the ``mailers`` (the e-mail integrations in use)."""
    own = {e.table["name"] for e in proj.rules}
    entries = [(e, glob) for e in glob.rules if e.table["name"] not in own]
    entries += [(e, proj) for e in proj.rules]
    rules: list[Rule] = []
    seen: dict[Rule, str] = {}
    for entry, source in entries:
        rule = _rule(entry, source, env)
        if rule.email and rule.email not in mailers:
            known = ", ".join(repr(m) for m in mailers) or "none"
            raise ConfigError(
                source.path,
                f"{entry.loc}.email",
                f"no e-mail integration named {rule.email!r} (e-mail integrations: {known})",
            )
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
    fill: bool = True,
) -> Config:
    """The resolved configuration of the project at ``root``.

    Missing files are fine (an empty config); a bad one raises ConfigError, one line. With
    ``fill=False`` (``rp-bts integrations list`` on a fresh checkout) a ``${VAR}`` set nowhere
    leaves its value unfilled, and ``Config.unset`` names it.
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
    env = Env(environ, env_file, lenient=not fill)
    config = resolve(root, project, global_, env)
    return dataclasses.replace(config, unset=tuple(sorted(env.unset))) if env.unset else config
