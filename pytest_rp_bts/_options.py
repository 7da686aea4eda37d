"""The plugin's options: each is a flag, an ini key ``rp_bts_*`` and a variable ``RP_BTS_*``.

Precedence is command line, then environment, then ini file, then the default (the config file's
own keys, such as ``launch``, come after the ini file). Bad values are rejected at the edge with
``pytest.UsageError``, as pytest-xdist does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import pytest

from rp_bts_agent.modes import MODES

_TRUE: Final = frozenset(("1", "true", "yes", "on"))
_FALSE: Final = frozenset(("0", "false", "no", "off", ""))


def parse_bool(text: str, *, source: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise pytest.UsageError(f"{source}: expected a boolean (1/0, true/false), got {text!r}")


def parse_mode(text: str) -> str:
    if text not in MODES:
        raise pytest.UsageError(f"--rp-bts-mode: expected one of {', '.join(MODES)}, got {text!r}")
    return text


def parse_attribute(text: str) -> str:
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or not value.strip():
        raise pytest.UsageError(f"--rp-bts-attribute: expected KEY:VALUE, got {text!r}")
    return text


class Spec(NamedTuple):
    """One option. NamedTuples here, not dataclasses: pytest loads this module at every start,
    with the plugin on or off, and a NamedTuple class is made in a tenth of the time."""

    flag: str
    help: str
    kind: Literal["bool", "str", "list"] = "str"
    check: Callable[[str], str] | None = None
    #: what ``pytest --help`` shows for the value
    metavar: str = "PATH"

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return self.dest.upper()


SPECS: Final = (
    Spec("--rp-bts", "file failures into the configured bug trackers", "bool"),
    Spec(
        "--rp-bts-mode",
        "post (file and comment), link (only link), dry-run (print the plan, write the results"
        " and report, file nothing)",
        check=parse_mode,
        metavar="MODE",
    ),
    Spec(
        "--rp-bts-config",
        "project config file (default: rp-bts.toml, or pyproject.toml with [tool.rp_bts], found"
        " from the test paths upwards: the project root is its folder)",
    ),
    Spec(
        "--rp-bts-global-config",
        "global config file (default: $RP_BTS_GLOBAL_CONFIG, else the user config dir)",
    ),
    Spec("--rp-bts-env-file", "file of secrets for ${VAR} (default: .env in the project root)"),
    Spec("--rp-bts-integration", "integration that failures go to by default", metavar="NAME"),
    Spec(
        "--rp-bts-launch",
        "launch name (default: the config's launch, else 'pytest')",
        metavar="NAME",
    ),
    Spec(
        "--rp-bts-attribute",
        "launch attribute KEY:VALUE (repeatable)",
        "list",
        check=parse_attribute,
        metavar="KEY:VALUE",
    ),
    Spec("--rp-bts-results", "write the results JSON here"),
    Spec(
        "--rp-bts-report",
        "HTML report to write (default: .rp-bts/report.html under the project root; "
        "'none': no report)",
    ),
    Spec("--rp-bts-no-notify", "send no summary e-mail", "bool"),
    Spec("--rp-bts-strict", "integration errors make the run fail", "bool"),
)


class Settings(NamedTuple):
    """The resolved options of one run."""

    enabled: bool
    mode: str
    config: Path | None
    global_config: Path | None
    env_file: Path | None
    integration: str
    launch: str
    #: ``KEY:VALUE`` strings, parsed by the agent
    attributes: tuple[str, ...]
    results: Path | None
    #: the report's path; None for the default (``.rp-bts/report.html``)
    report: Path | None
    #: ``--rp-bts-report=none``
    no_report: bool
    notify: bool
    strict: bool


_ACTIONS: Final = {"bool": "store_true", "list": "append", "str": "store"}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rp-bts", "bug-tracker integrations (pytest-rp-bts)")
    for spec in SPECS:
        typed = {} if spec.kind == "bool" else {"type": spec.check, "metavar": spec.metavar}
        # default None: "not given", so the environment and the ini file can still decide
        group.addoption(
            spec.flag,
            action=_ACTIONS[spec.kind],
            dest=spec.dest,
            default=None,
            help=f"{spec.help} [env {spec.env}]",
            **typed,
        )
        ini_type: Literal["linelist", "string", "bool"] = (
            "linelist" if spec.kind == "list" else "bool" if spec.kind == "bool" else "string"
        )
        parser.addini(spec.dest, spec.help, type=ini_type)


def _raw(config: pytest.Config, spec: Spec, environ: Mapping[str, str]) -> Any:
    value = config.getoption(spec.dest)
    if value is not None:
        return value
    if spec.env in environ:
        text = environ[spec.env]
        if spec.kind == "bool":
            return parse_bool(text, source=spec.env)
        if spec.kind == "list":
            items = [item for item in text.split(",") if item.strip()]
            return [spec.check(i) if spec.check else i for i in items]
        return spec.check(text) if spec.check else text
    ini = config.getini(spec.dest)
    if ini:
        if spec.kind == "bool":
            return parse_bool(str(ini), source=f"ini {spec.dest}")
        if spec.kind == "list":
            return [spec.check(i) if spec.check else i for i in ini]
        return spec.check(str(ini)) if spec.check else str(ini)
    return None


def _path(value: Any, base: Path) -> Path | None:
    return base / Path(value).expanduser() if value else None


def resolve(config: pytest.Config, environ: Mapping[str, str]) -> Settings:
    raw = {spec.dest: _raw(config, spec, environ) for spec in SPECS}
    base = Path(config.invocation_params.dir)
    return Settings(
        enabled=bool(raw["rp_bts"]),
        mode=raw["rp_bts_mode"] or "post",
        config=_path(raw["rp_bts_config"], base),
        global_config=_path(raw["rp_bts_global_config"], base),
        env_file=_path(raw["rp_bts_env_file"], base),
        integration=raw["rp_bts_integration"] or "",
        launch=raw["rp_bts_launch"] or "",
        attributes=tuple(raw["rp_bts_attribute"] or ()),
        results=_path(raw["rp_bts_results"], base),
        report=_path(raw["rp_bts_report"], base) if raw["rp_bts_report"] != "none" else None,
        no_report=raw["rp_bts_report"] == "none",
        notify=not raw["rp_bts_no_notify"],
        strict=bool(raw["rp_bts_strict"]),
    )
