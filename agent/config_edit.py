"""Edit config files in place, keeping comments and layout (tomlkit); validate before writing.

Every edit renders the new text, validates it with the loader's own checks and only then replaces
the file, atomically: an edit that would make the config invalid leaves the file untouched.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, Comment, InlineTable, Item, Null, Table, Whitespace

from .config import Scope, check_section, parse_toml, read_config_file, resolve, section_of
from .config_types import Config, ConfigError
from .rootdir import default_global_file

__all__ = [
    "add_integration",
    "add_rule",
    "edit_integration",
    "edit_rule",
    "remove_integration",
    "remove_rule",
    "reset",
    "unlink",
]

Section = Container | Table
#: one edit of a file's rp-bts section; returns what to tell the user.
Change = Callable[[Section], list[str]]


def add_integration(
    file: Path,
    table: Mapping[str, Any],
    *,
    scope: Scope,
    global_file: Path | None = None,
) -> list[str]:
    """Append an ``[[integrations]]`` table.

    A project integration of a kind the global file also has unlinks that kind, as ReportPortal's
    "Unlink and setup manually" does: otherwise the new integration would be ignored.
    """
    kind = str(table.get("kind", ""))
    global_kinds = _global_kinds(global_file) if scope == "project" else set()

    def change(section: Section) -> list[str]:
        notes = [f"added {kind} integration {table.get('name')!r} to {file}"]
        if kind in global_kinds and kind not in _unlinked(section):
            _add_unlinked(section, kind)  # first, so it lands above the tables
            notes.append(
                f"unlinked {kind}: the global file also has {kind} integrations, and this project "
                f"now uses only its own (`rp-bts integrations reset {kind}` links it back)"
            )
        _append(section, "integrations", table, file)
        return notes

    return _edit(file, scope, change, global_file)


def _append(section: Section, array: str, table: Mapping[str, Any], file: Path) -> None:
    """One more table in ``[[array]]``, created when the file has none."""
    tables = section.get(array)
    if tables is None:
        tables = tomlkit.aot()
        section.append(array, tables)
    if not isinstance(tables, (AoT, Array)):
        raise ConfigError(file, array, f"expected an array of tables ([[{array}]])")
    spaced = isinstance(tables, AoT) and (len(tables) > 0 or len(section) > 1)
    tables.append(_table(table, inline=isinstance(tables, Array), spaced=spaced))


def _set_keys(target: Any, changes: Mapping[str, Any]) -> None:
    """Set keys of a table; a dotted key sets one entry of a table, ``None`` deletes."""
    for dotted, value in changes.items():
        key, *path = dotted.split(".")
        if path:
            current = target.get(key)
            value = _set_in(current.unwrap() if current is not None else {}, path, value)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _item(value)


def add_rule(file: Path, table: Mapping[str, Any], *, scope: Scope = "project") -> list[str]:
    """Append a ``[[rules]]`` table; checked as the loader checks rules before it is written."""

    def change(section: Section) -> list[str]:
        _append(section, "rules", table, file)
        return [f"added rule {table.get('name')!r} to {file}"]

    return _edit(file, scope, change, None)


def edit_rule(
    file: Path, name: str, changes: Mapping[str, Any], *, scope: Scope = "project"
) -> list[str]:
    """Set keys of the rule called ``name`` (``None`` deletes a key), comments kept."""

    def change(section: Section) -> list[str]:
        _set_keys(_find(section, name, file, "rules"), changes)
        return [f"updated rule {name!r} in {file}"]

    return _edit(file, scope, change, None)


def remove_rule(file: Path, name: str, *, scope: Scope = "project") -> list[str]:
    """Delete the rule called ``name`` with the comments inside its table."""

    def change(section: Section) -> list[str]:
        _remove_table(section, _find(section, name, file, "rules"), "rules")
        return [f"removed rule {name!r} from {file}"]

    return _edit(file, scope, change, None)


def edit_integration(
    file: Path,
    name: str,
    changes: Mapping[str, Any],
    *,
    scope: Scope = "project",
    global_file: Path | None = None,
) -> list[str]:
    """Set keys of the integration called ``name``; a dotted key (``fields.priority``) sets one
    entry of a table, and ``None`` deletes the key."""

    def change(section: Section) -> list[str]:
        _set_keys(_find(section, name, file), changes)
        return [f"updated integration {name!r} in {file}"]

    return _edit(file, scope, change, global_file)


def remove_integration(
    file: Path, name: str, *, scope: Scope = "project", global_file: Path | None = None
) -> list[str]:
    """Delete the integration called ``name``, with the comments inside its table."""

    def change(section: Section) -> list[str]:
        try:
            table = _find(section, name, file)
        except ConfigError as exc:
            global_path = default_global_file() if global_file is None else global_file
            source = read_config_file(global_path, "global") if scope == "project" else None
            if source and any(e.table.get("name") == name for e in source.integrations):
                hint = f"; it is in the global file {global_path}: add --global"
                raise ConfigError(exc.file, exc.key, exc.message + hint) from None
            raise
        _remove_table(section, table)
        return [f"removed integration {name!r} from {file}"]

    return _edit(file, scope, change, global_file)


def unlink(file: Path, kind: str, *, global_file: Path | None = None) -> list[str]:
    """List ``kind`` in ``unlinked``: the project uses its own integrations of that kind only."""

    _refuse_global(file, global_file)

    def change(section: Section) -> list[str]:
        if kind in _unlinked(section):
            return [f"{kind} is already unlinked in {file}"]
        _add_unlinked(section, kind)
        notes = [f"unlinked {kind}: this project now uses only its own {kind} integrations"]
        if not any(t.get("kind") == kind for t in _tables(section)):
            notes.append(f"it has none yet: add one with `rp-bts integrations add {kind} NAME`")
        return notes

    return _edit(file, "project", change, global_file)


def reset(file: Path, kind: str, *, global_file: Path | None = None) -> list[str]:
    """Reset ``kind`` to global: delete the project's integrations of that kind and link it."""
    _refuse_global(file, global_file)

    def change(section: Section) -> list[str]:
        doomed = [t for t in _tables(section) if t.get("kind") == kind]
        for table in doomed:
            _remove_table(section, table)
        names = [str(t.get("name")) for t in doomed]
        if kind in _unlinked(section):
            unlinked = section["unlinked"]
            unlinked.remove(kind)
            _drop_if_empty(section, "unlinked")
        notes = [f"{kind} is linked to the global integrations again"]
        if names:
            notes.insert(0, f"deleted the project's {kind} integrations: {', '.join(names)}")
        if section.get("default_integration") in names:
            del section["default_integration"]
            notes.append("default_integration named one of them: removed it")
        return notes

    return _edit(file, "project", change, global_file)


def _refuse_global(file: Path, global_file: Path | None) -> None:
    """Unlinking is the project's choice; the global file has no ``unlinked``."""
    global_path = default_global_file() if global_file is None else global_file
    if Path(file).resolve() == global_path.resolve():
        raise ConfigError(
            file,
            "unlinked",
            "unlinked is a project setting; run this in a project, not on the global file",
        )


def _edit(file: Path, scope: Scope, change: Change, global_file: Path | None) -> list[str]:
    """Read, change, validate, write: the file is replaced only when the result is valid."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
        mode: int | None = file.stat().st_mode
    except FileNotFoundError:
        text, mode = "", None
    section_of(parse_toml(text, file), file)  # the loader's errors, before tomlkit's
    document = tomlkit.parse(text)
    notes = change(_section(document, file))
    new_text = tomlkit.dumps(document)
    if not text.endswith("\n\n"):
        # a deleted table leaves the blank line that separated it; the file did not end so.
        new_text = new_text.rstrip("\n") + "\n"
    if not text:
        new_text = new_text.lstrip("\n")
    config = _validate(new_text, file, scope, mode or 0, global_file)
    _write(file, new_text, mode)
    return notes + list(config.warnings)


def _validate(text: str, file: Path, scope: Scope, mode: int, global_file: Path | None) -> Config:
    """The loader's checks on the text about to be written, ``${VAR}`` left unfilled."""
    section, prefix = section_of(parse_toml(text, file), file)
    edited = check_section(section, file, scope, mode=mode, prefix=prefix)
    if scope == "global":
        return resolve(file.parent, None, edited, None)
    global_path = default_global_file() if global_file is None else global_file
    try:
        global_ = read_config_file(global_path, "global")
        return resolve(file.parent, edited, global_, None)
    except ConfigError as exc:
        if exc.file != str(global_path):
            raise
    # the global file is broken, and not this project's to fix: check the project on its own.
    return resolve(file.parent, edited, None, None)


def _write(file: Path, text: str, mode: int | None) -> None:
    """Replace ``file`` atomically, keeping its permissions; a new file gets the umask's."""
    target = file.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(temp, stat.S_IMODE(mode))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _section(document: tomlkit.TOMLDocument, file: Path) -> Section:
    """The table holding rp-bts keys: the document, or ``[tool.rp_bts]`` (created if missing)."""
    if file.name != "pyproject.toml":
        return document
    if "tool" not in document:
        document["tool"] = tomlkit.table(is_super_table=True)
    tool = document["tool"]
    if "rp_bts" not in tool:
        tool["rp_bts"] = tomlkit.table()
    section = tool["rp_bts"]
    assert isinstance(section, Table)  # section_of() rejected anything else when parsing
    return section


def _tables(section: Section, array: str = "integrations") -> list[Any]:
    """The tables of ``[[integrations]]`` (or ``[[rules]]``)."""
    tables = section.get(array, [])
    return [t for t in tables if isinstance(t, (Table, InlineTable, dict))]


def _find(section: Section, name: str, file: Path, array: str = "integrations") -> Any:
    for table in _tables(section, array):
        if table.get("name") == name:
            return table
    known = ", ".join(str(t.get("name")) for t in _tables(section, array)) or "none"
    what = array.rstrip("s")
    raise ConfigError(file, f"{array}[{name!r}]", f"no such {what}; {file} has: {known}")


def _remove_table(section: Section, table: Any, array: str = "integrations") -> None:
    """Delete one table with the comment above it, keeping the comment above the next.

    tomlkit files a comment that precedes a table header under the element before it, so a plain
    delete would take the next table's comment away and leave the deleted one's behind.
    """
    integrations = section[array]
    if not isinstance(integrations, AoT):
        integrations.remove(table)  # an inline array: no comments between its tables
        _drop_if_empty(section, array)
        return
    index = next(i for i, t in enumerate(integrations) if t is table)
    # the body holding this table's own comment, and where that body's part above the table ends
    above = integrations[index - 1].value.body if index > 0 else _body(section)
    end = len(above)
    if index == 0:
        end = next(i for i, (_, item) in enumerate(above) if item is integrations)
    for i in range(end - len(_trivia_run(above[:end])), end):
        above[i] = (None, Null())  # as tomlkit's own deletes do: indexes stay valid
    own = [item for _, item in _trivia_run(table.value.body)]
    del integrations[index]
    if index < len(integrations):
        following = integrations[index]
        following.trivia.indent = "".join(i.as_string() for i in own) + following.trivia.indent
    else:
        home = integrations[index - 1].value if index > 0 else _container(section)
        for item in own:
            home.append(None, item)
    _drop_if_empty(section, array)


def _trivia_run(body: list[tuple[Any, Item]]) -> list[tuple[Any, Item]]:
    """The comments and blank lines that end ``body``."""
    run: list[tuple[Any, Item]] = []
    for key, item in reversed(body):
        if key is not None or not isinstance(item, (Comment, Whitespace, Null)):
            break
        run.insert(0, (key, item))
    return run


def _container(section: Section) -> Container:
    return section.value if isinstance(section, Table) else section


def _body(section: Section) -> list[tuple[Any, Item]]:
    return _container(section).body


def _unlinked(section: Section) -> list[str]:
    value = section.get("unlinked", [])
    return [str(v) for v in value] if isinstance(value, (list, Array)) else []


def _add_unlinked(section: Section, kind: str) -> None:
    unlinked = section.get("unlinked")
    if isinstance(unlinked, Array):
        unlinked.append(kind)
    else:
        section["unlinked"] = [kind]


def _drop_if_empty(section: Section, key: str) -> None:
    if key in section and not section[key]:
        del section[key]


def _set_in(base: Any, path: list[str], value: Any) -> dict[str, Any]:
    """``base`` (a table) with the entry at ``path`` set, or deleted when ``value`` is None."""
    out = dict(base) if isinstance(base, Mapping) else {}
    head, *rest = path
    if rest:
        out[head] = _set_in(out.get(head), rest, value)
    elif value is None:
        out.pop(head, None)
    else:
        out[head] = value
    return out


def _item(value: Any) -> Item:
    """A plain value as a tomlkit item; tables stay inline so a value stays on its key's line."""
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        for k, v in value.items():
            table[k] = _item(v)
        return table
    item: Item = tomlkit.item(value)
    return item


def _table(values: Mapping[str, Any], *, inline: bool, spaced: bool) -> Table | InlineTable:
    """A new ``[[integrations]]`` table, after a blank line when it follows another one."""
    if inline:
        item = _item(values)
        assert isinstance(item, InlineTable)
        return item
    table = tomlkit.table()
    for key, value in values.items():
        table[key] = _item(value)
    if spaced:
        table.trivia.indent = "\n"
    return table


def _global_kinds(global_file: Path | None) -> set[str]:
    """Kinds the global file has; none when it is missing or broken (the loader reports that)."""
    path = default_global_file() if global_file is None else global_file
    try:
        source = read_config_file(path, "global")
    except ConfigError:
        return set()
    return {e.kind for e in source.integrations} if source else set()
