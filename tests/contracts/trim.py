"""Regenerate the API contracts in this folder from the vendors' full files.

Two files are trimmed: only the paths our clients and test servers call are kept (every method of
each kept path), with every component they reach through ``$ref``, however indirectly, and the
spec's top-level keys (``openapi``, ``info``, ``servers``, ``security``, ...). Component
``securitySchemes`` are kept whole, top-level ``tags`` only where a kept operation uses them.
Nothing kept is changed. The other two files are copied byte for byte.

    python tests/contracts/trim.py SOURCE_DIR            # rewrite the files in tests/contracts/
    python tests/contracts/trim.py SOURCE_DIR --check    # exit 1 if a file here differs

``SOURCE_DIR`` holds the full files under the same names (see README.md for where they come
from). The output depends only on the input: the same source gives the same bytes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

HERE: Final = Path(__file__).resolve().parent

#: Jira REST paths (all methods of each are kept): what ``rp_bts_agent.trackers.jira``,
#: ``rp_bts_agent._cli_jira``, the ``jira`` library calls they make and ``tests/jira_server.py``
#: serve. A path the client calls and this list lacks is a contract violation in the tests.
JIRA_PATHS: Final = (
    "/rest/api/2/serverInfo",
    "/rest/api/2/myself",
    "/rest/api/2/user",
    "/rest/api/2/mypermissions",
    "/rest/api/2/project",
    "/rest/api/2/project/{projectIdOrKey}",
    "/rest/api/2/issue",
    "/rest/api/2/issue/bulk",
    "/rest/api/2/issue/createmeta/{projectIdOrKey}/issuetypes",
    "/rest/api/2/issue/createmeta/{projectIdOrKey}/issuetypes/{issueTypeId}",
    "/rest/api/2/issue/{issueIdOrKey}",
    "/rest/api/2/issue/{issueIdOrKey}/attachments",
    "/rest/api/2/issue/{issueIdOrKey}/comment",
    "/rest/api/2/issue/{issueIdOrKey}/remotelink",
    "/rest/api/2/issue/{issueIdOrKey}/transitions",
    "/rest/api/2/issueLink",
    "/rest/api/2/issueLinkType",
    "/rest/api/2/search",
    "/rest/api/2/search/jql",
)

RALLY_PREFIX: Final = "/slm/webservice/v2.0/"
#: Rally WSAPI resources: every path under ``/slm/webservice/v2.0/<resource>`` is kept (the
#: list, ``/{objectId}``, ``/create``, ``/{objectId}/copy``).
RALLY_RESOURCES: Final = (
    "defect",
    "tag",
    "attachment",
    "attachmentcontent",
    "conversationpost",
    "typedefinition",
    "attributedefinition",
    "scopedattributedefinition",
    "allowedattributevalue",
    "workspace",
    "project",
    "subscription",
    "user",
    "workspacepermission",
    "projectpermission",
    "state",
    "schedulestate",
    "workspaceconfiguration",
)


def _rally_resource(path: str) -> str:
    return path[len(RALLY_PREFIX) :].split("/", 1)[0] if path.startswith(RALLY_PREFIX) else ""


def _same(path: str) -> str:
    return path


class Contract(NamedTuple):
    """One file, named the same in the source folder and here. A path is kept when ``key`` maps
    it to one of ``keep``, each of which must keep at least one path; no ``keep``: the file is
    copied whole."""

    name: str
    keep: tuple[str, ...] = ()
    key: Callable[[str], str] = _same


CONTRACTS: Final = (
    Contract("jira-platform-v2.json", JIRA_PATHS),
    Contract("rally-wsapi-v2.0.yaml", RALLY_RESOURCES, _rally_resource),
    Contract("saucelabs-rest-v1.json"),
    Contract("clarity-ppm-rest-v1.yaml"),
)

YAML_HEADER: Final = (
    "# Trimmed by tests/contracts/trim.py from the full {name} (see README.md).\n"
    "# Regenerate it with that script; do not edit it by hand.\n"
)


def _yaml() -> Any:
    """PyYAML (installed with openapi-core), imported by name: it ships no type hints."""
    return importlib.import_module("yaml")


def load(name: str, text: str) -> dict[str, Any]:
    if name.endswith(".json"):
        data = json.loads(text)
    else:
        yaml = _yaml()
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise SystemExit(f"{name}: not an OpenAPI document")
    return data


def dump(name: str, spec: dict[str, Any]) -> str:
    if name.endswith(".json"):
        return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    # the pure-Python dumper on purpose: the same bytes with or without libyaml
    body: str = _yaml().dump(
        spec, Dumper=_yaml().SafeDumper, sort_keys=False, allow_unicode=True, width=100
    )
    return YAML_HEADER.format(name=name) + body


def refs(node: Any) -> Iterator[str]:
    """Every local ``$ref`` (``#/...``) anywhere below ``node``."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                yield ref
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def pointer(ref: str) -> tuple[str, ...]:
    """``#/components/schemas/A~1B`` -> ``("components", "schemas", "A/B")`` (RFC 6901)."""
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))


def closure(spec: dict[str, Any], roots: Iterator[str]) -> set[tuple[str, str]]:
    """``(section, name)`` of every component reached from ``roots``, directly or not."""
    seen: set[tuple[str, str]] = set()
    stack = list(roots)
    while stack:
        ref = stack.pop()
        parts = pointer(ref)
        if len(parts) < 3 or parts[0] != "components":
            raise SystemExit(f"$ref {ref}: only references into components are supported")
        section, name = parts[1], parts[2]
        if (section, name) in seen:
            continue
        try:
            target = spec["components"][section][name]
        except KeyError:
            raise SystemExit(f"$ref {ref}: no such component") from None
        seen.add((section, name))
        stack.extend(refs(target))
    return seen


def trim(spec: dict[str, Any], contract: Contract) -> dict[str, Any]:
    """The spec with only the kept paths and what they reference, in the source's order."""
    paths = {p: item for p, item in spec["paths"].items() if contract.key(p) in contract.keep}
    missing = set(contract.keep) - {contract.key(p) for p in paths}
    if missing:
        raise SystemExit(f"{contract.name}: not in the source: {', '.join(sorted(missing))}")
    # top-level security, responses etc. outside components may hold references too
    outside = {k: v for k, v in spec.items() if k not in ("paths", "components", "tags")}
    reached = closure(spec, refs([paths, outside]))
    components: dict[str, Any] = {}
    for section, entries in spec.get("components", {}).items():
        if section == "securitySchemes":
            components[section] = entries
            continue
        kept = {name: value for name, value in entries.items() if (section, name) in reached}
        if kept:
            components[section] = kept
    used_tags = {
        tag
        for item in paths.values()
        for operation in item.values()
        if isinstance(operation, dict)
        for tag in operation.get("tags", ())
    }
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "paths":
            out[key] = paths
        elif key == "components":
            out[key] = components
        elif key == "tags":
            out[key] = [tag for tag in value if tag.get("name") in used_tags]
        else:
            out[key] = value
    return out


def build(source: Path, contract: Contract) -> bytes:
    """The bytes this folder should hold for ``contract``."""
    raw = (source / contract.name).read_bytes()
    if not contract.keep:
        return raw
    spec = load(contract.name, raw.decode("utf-8"))
    return dump(contract.name, trim(spec, contract)).encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="the folder holding the vendors' full files")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    differ = 0
    for contract in CONTRACTS:
        data = build(args.source, contract)
        target: Path = args.out / contract.name
        how = "trimmed" if contract.keep else "copied"
        if args.check:
            same = target.exists() and target.read_bytes() == data
            differ += not same
            print(f"{contract.name}: {'up to date' if same else 'DIFFERS'}")
        elif not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            print(f"{contract.name}: {how}, {len(data):,} bytes")
        else:
            print(f"{contract.name}: {how}, unchanged")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
