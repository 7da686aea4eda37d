"""Fingerprints: stable under line shifts, reruns and noise; different for different failures.

Real exceptions are raised from modules written to ``tmp_path`` (the rootdir of these tests) and
imported by file location, so every frame walked is a real frame of a real file.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from rp_bts_agent import fingerprint as fp
from rp_bts_agent.fingerprint import Frame, compute, frames_from_traceback, normalize_message

NODEID = "tests/test_app.py::test_it"
_names = itertools.count()


@pytest.fixture(autouse=True)
def _no_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rewritten file of the same size in the same second would load stale bytecode.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


def load(path: Path, source: str, module_name: str | None = None) -> types.ModuleType:
    """Write ``source`` to ``path`` and import it afresh (a new module each time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    name = module_name or f"fp_sample_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raised(func: Callable[[], object]) -> BaseException:
    try:
        func()
    except Exception as exc:
        return exc
    pytest.fail(f"{func!r} did not raise")


def fingerprint_of(exc: BaseException, root: Path, nodeid: str = NODEID) -> str:
    frames = frames_from_traceback(exc.__traceback__, root)
    return compute(nodeid, type(exc).__name__, str(exc), frames)


APP = """\
def check(value):
    total = value * 2
    assert total == 10, f"total was {total}"


def test_it():
    check(3)
"""


# ------------------------------------------------------------------------------ normalize_message

MESSAGES = [
    pytest.param("assert 5 == 6", "assert <num> == <num>", id="ints"),
    pytest.param("1.5e-3 != -2.0", "<num> != -<num>", id="floats"),
    pytest.param("Python 3.11.7 required", "Python <num> required", id="version"),
    pytest.param("a\n\n  b\tc  ", "a b c", id="whitespace"),
    pytest.param(
        "where x = <Foo object at 0x7f3a2b1c9d40>", "where x = <Foo object at <addr>>", id="addr"
    ),
    pytest.param("flags 0x1F set", "flags <hex> set", id="hex-literal"),
    pytest.param("commit 3f9a0c4be1d27a65 not found", "commit <hex> not found", id="commit"),
    pytest.param("cafebabe and deadbeef", "cafebabe and deadbeef", id="hex-words-stay"),
    pytest.param(
        "user 123E4567-E89B-12D3-A456-426614174000 missing", "user <uuid> missing", id="uuid"
    ),
    pytest.param("at 2024-05-01T10:00:00.123456+02:00.", "at <datetime>.", id="iso-datetime"),
    pytest.param("on 2024-05-01 10:00:00Z", "on <datetime>", id="iso-space"),
    pytest.param("due 2024-05-01", "due <datetime>", id="iso-date"),
    pytest.param("Date: Tue, 15 Nov 1994 08:12:31 GMT", "Date: <datetime>", id="rfc2822"),
    pytest.param("Mon Jan  1 10:00:00 2024 boom", "<datetime> boom", id="ctime"),
    pytest.param("at 12:30:05.25 it broke", "at <time> it broke", id="clock"),
    pytest.param("timed out after 30.5s", "timed out after <duration>", id="seconds"),
    pytest.param("took 250 ms (limit 3 hours)", "took <duration> (limit <duration>)", id="ms"),
    pytest.param(
        "No such file: '/tmp/pytest-of-ci/pytest-7/test_a0/config.toml'",
        "No such file: '<path>'",
        id="posix-path",
    ),
    pytest.param("PosixPath('/home/ci/x')", "PosixPath('<path>')", id="pathlib-repr"),
    pytest.param(
        r"C:\Users\ci\AppData\Local\Temp\tmpk2j3\x.txt missing", "<path> missing", id="windows"
    ),
    pytest.param(r"open \\server\share\x.txt", "open <path>", id="unc"),
    pytest.param("see tests/data/x.json", "see tests/data/x.json", id="relative-path-stays"),
    pytest.param("1/2 and a/b", "<num>/<num> and a/b", id="not-paths"),
    pytest.param(
        "GET http://bot:s3cret@127.0.0.1:54321/api/v2/items/42?token=abc#top failed",
        "GET http://<ip>:<port>/api/v2/items/<num>?<query> failed",
        id="url",
    ),
    pytest.param(
        "https://Jira.Example.com/browse/ab3f9a0c4be1d27a65",
        "https://jira.example.com/browse/<hex>",
        id="url-host-kept",
    ),
    pytest.param("connect to 10.1.2.3:5432 refused", "connect to <ip> refused", id="ipv4"),
    pytest.param("mail bob.smith+qa@example.co.uk", "mail <email>", id="email"),
    pytest.param("request k2j3l4x9q8w7e6r5t4 failed", "request <id> failed", id="random-id"),
    pytest.param("utf8 sha256 test_2 v1.2 12px", "utf8 sha256 test_2 v1.2 12px", id="words-stay"),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("raw", "expected"), MESSAGES)
def test_normalize_message(raw: str, expected: str) -> None:
    assert normalize_message(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), MESSAGES)
def test_normalize_message_is_idempotent(raw: str, expected: str) -> None:
    assert normalize_message(expected) == expected


def test_normalize_message_is_capped() -> None:
    huge = "x " * 100_000
    assert len(normalize_message(huge)) == fp.MESSAGE_LIMIT
    assert normalize_message("y" * 600 + " tail") == normalize_message("y" * 600 + " other")


# ----------------------------------------------------------------------------- normalize_source


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    assert total == 10, f'total was {total}'", "assert total == <num>, <str>"),
        ('assert total==11,"other"  # why', "assert total == <num>, <str>"),
        ("assert resp.json()['id'] == b'x'", "assert resp.json()[<str>] == <str>"),
        ("x = -1.5e3 + obj.v2[0x1F]", "x = -<num> + obj.v2[<num>]"),
        ("f(*args, **kw)", "f(*args, **kw)"),
        ("if not (a and b) or c <= d:", "if not (a and b) or c <= d:"),
        ("def f(a: int = 3) -> None:", "def f(a: int = <num>) -> None:"),
        ("call(a,", "call(a,"),  # one line of a multi-line call
        ("text = '''starts here", "text = <str>"),  # an unterminated string
        ("", ""),
    ],
)
def test_normalize_source(line: str, expected: str) -> None:
    assert fp.normalize_source(line) == expected


# -------------------------------------------------------------------------------- test_identity


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("test_x.py::test_a[1-foo]", "test_x.py::test_a"),
        ("tests/test_x.py::TestC::test_a[x::y[1]]", "tests/test_x.py::TestC::test_a"),
        ("test_x.py::test_a", "test_x.py::test_a"),
        ("test_x.py", "test_x.py"),
        ("dir[1]/test_x.py::test_a", "dir[1]/test_x.py::test_a"),
    ],
)
def test_identity_drops_parameter_ids(nodeid: str, expected: str) -> None:
    assert fp.test_identity(nodeid) == expected
    assert fp.test_identity(nodeid, include_params=True) == nodeid


# ------------------------------------------------------------------------------------- compute

FRAMES = (Frame("tests/test_app.py", "test_it", "assert total == <num>"),)


def test_compute_is_a_label() -> None:
    value = compute(NODEID, "AssertionError", "boom", FRAMES)
    assert re.fullmatch(rf"rpbts{fp.FINGERPRINT_VERSION}-[0-9a-f]{{20}}", value)
    assert value == compute(NODEID, "AssertionError", "boom", FRAMES)  # deterministic


def test_compute_ignores_noise_in_messages() -> None:
    first = "timeout after 30.1s at 2024-05-01T10:00:00 in /tmp/pytest-1/x (id 3f9a0c4be1d27a65)"
    rerun = "timeout after 29.7s at 2024-06-02T11:30:00 in /tmp/pytest-9/y (id 0a1b2c3d4e5f6789)"
    assert compute(NODEID, "TimeoutError", first, FRAMES) == compute(
        NODEID, "TimeoutError", rerun, FRAMES
    )


@pytest.mark.parametrize(
    ("nodeid", "exc_type", "message", "frames"),
    [
        pytest.param(NODEID, "ValueError", "boom", FRAMES, id="exception-type"),
        pytest.param(NODEID, "AssertionError", "connection refused", FRAMES, id="message"),
        pytest.param(NODEID + "_too", "AssertionError", "boom", FRAMES, id="test"),
        pytest.param(
            NODEID,
            "AssertionError",
            "boom",
            (Frame("tests/test_app.py", "test_it", "assert count == <num>"),),
            id="source-line",
        ),
        pytest.param(
            NODEID,
            "AssertionError",
            "boom",
            (Frame("tests/test_app.py", "helper", "assert total == <num>"),),
            id="function",
        ),
        pytest.param(
            NODEID,
            "AssertionError",
            "boom",
            (Frame("tests/test_other.py", "test_it", "assert total == <num>"),),
            id="path",
        ),
        pytest.param(NODEID, "AssertionError", "boom", (), id="no-frames"),
    ],
)
def test_compute_differs_for_different_failures(
    nodeid: str, exc_type: str, message: str, frames: tuple[Frame, ...]
) -> None:
    assert compute(NODEID, "AssertionError", "boom", FRAMES) != compute(
        nodeid, exc_type, message, frames
    )


def test_parameter_ids_collapse_unless_asked() -> None:
    one = "tests/test_app.py::test_it[1-foo]"
    two = "tests/test_app.py::test_it[2-bar]"
    assert compute(one, "E", "m", FRAMES) == compute(two, "E", "m", FRAMES)
    assert compute(one, "E", "m", FRAMES, include_params=True) != compute(
        two, "E", "m", FRAMES, include_params=True
    )


def test_parts_do_not_run_together() -> None:
    assert compute("a", "bc", "m", ()) != compute("ab", "c", "m", ())


# ------------------------------------------------------------------------ real exceptions, frames


def test_frames_of_a_real_failure(tmp_path: Path) -> None:
    app = load(tmp_path / "tests" / "test_app.py", APP)
    exc = raised(app.test_it)
    assert frames_from_traceback(exc.__traceback__, tmp_path) == (
        Frame("tests/test_app.py", "test_it", "check(<num>)"),
        Frame("tests/test_app.py", "check", "assert total == <num>, <str>"),
    )
    assert frames_from_traceback(exc.__traceback__, str(tmp_path), limit=1) == (
        Frame("tests/test_app.py", "check", "assert total == <num>, <str>"),
    )
    assert frames_from_traceback(exc.__traceback__, tmp_path, limit=0) == ()
    assert frames_from_traceback(None, tmp_path) == ()


def test_stable_when_code_is_added_above(tmp_path: Path) -> None:
    path = tmp_path / "tests" / "test_app.py"
    before = fingerprint_of(raised(load(path, APP).test_it), tmp_path)
    shifted = "import os\n# a comment\n\n\n" + APP.replace("    total =", "\n    total =")
    after = fingerprint_of(raised(load(path, shifted).test_it), tmp_path)
    assert before == after


def test_stable_when_reformatted_or_constants_change(tmp_path: Path) -> None:
    path = tmp_path / "tests" / "test_app.py"
    before = fingerprint_of(raised(load(path, APP).test_it), tmp_path)
    edited = APP.replace('total == 10, f"total was {total}"', "total==12,f'total was {total}'")
    after = fingerprint_of(raised(load(path, edited).test_it), tmp_path)
    assert before == after


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("assert total == 10", "assert value == 10", id="other-assert-line"),
        pytest.param('    assert total == 10, f"total was {total}"', "    1 / 0", id="other-type"),
        pytest.param("check", "verify", id="other-function"),
    ],
)
def test_differs_for_a_different_failure(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "tests" / "test_app.py"
    before = fingerprint_of(raised(load(path, APP).test_it), tmp_path)
    after = fingerprint_of(raised(load(path, APP.replace(old, new)).test_it), tmp_path)
    assert before != after


def test_different_tests_differ(tmp_path: Path) -> None:
    exc = raised(load(tmp_path / "tests" / "test_app.py", APP).test_it)
    assert fingerprint_of(exc, tmp_path) != fingerprint_of(exc, tmp_path, NODEID + "_too")


def test_stdlib_frames_are_left_out(tmp_path: Path) -> None:
    app = load(
        tmp_path / "app.py",
        """\
        import json

        def parse(text):
            return json.loads(text)
        """,
    )
    exc = raised(lambda: app.parse("{not json"))
    assert isinstance(exc, json.JSONDecodeError)
    assert frames_from_traceback(exc.__traceback__, tmp_path) == (
        Frame("app.py", "parse", "return json.loads(text)"),
    )


def test_site_packages_and_outside_frames_are_left_out(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    venv_lib = tmp_path / ".venv" / "lib" / "python3" / "site-packages" / "fakelib.py"
    lib = load(venv_lib, "def boom():\n    raise RuntimeError('deep in a library')\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "other.py"
    other = load(elsewhere, "def relay(callback):\n    callback()\n")
    app = load(tmp_path / "app.py", "def run(relay, boom):\n    relay(boom)\n")
    exc = raised(lambda: app.run(other.relay, lib.boom))
    assert frames_from_traceback(exc.__traceback__, tmp_path) == (
        Frame("app.py", "run", "relay(boom)"),
    )


def test_hidden_and_internal_frames_are_left_out(tmp_path: Path) -> None:
    hidden_module = load(
        tmp_path / "helpers" / "hidden.py",
        "__tracebackhide__ = True\n\ndef fail():\n    raise ValueError('x')\n",
    )
    internal = load(
        tmp_path / "helpers" / "plugin_like.py",
        "def call(func):\n    func()\n",
        module_name="pluggy._fake_for_rp_bts_tests",
    )
    app = load(
        tmp_path / "app.py",
        """\
        def helper(call, fail):
            __tracebackhide__ = True
            call(fail)

        def run(call, fail):
            helper(call, fail)
        """,
    )
    exc = raised(lambda: app.run(internal.call, hidden_module.fail))
    assert frames_from_traceback(exc.__traceback__, tmp_path) == (
        Frame("app.py", "run", "helper(call, fail)"),
    )


def test_only_the_innermost_frames_count(tmp_path: Path) -> None:
    app = load(
        tmp_path / "app.py",
        """\
        def down(n):
            if n == 0:
                raise RecursionError("bottom")
            down(n - 1)
        """,
    )
    shallow = raised(lambda: app.down(6))
    deep = raised(lambda: app.down(9))
    frames = frames_from_traceback(deep.__traceback__, tmp_path)
    assert len(frames) == 5
    assert frames[-1] == Frame("app.py", "down", "raise RecursionError(<str>)")
    assert fingerprint_of(shallow, tmp_path) == fingerprint_of(deep, tmp_path)


def test_missing_source_keeps_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "gone.py"
    exc = raised(load(path, "def fail():\n    raise KeyError('k')\n").fail)
    path.unlink()
    assert frames_from_traceback(exc.__traceback__, tmp_path) == (Frame("gone.py", "fail", ""),)


# ----------------------------------------------------------------------------- grouping by cause

PRODUCT = """\
def price(item):
    raise LookupError(f"no price for item {item}")
"""


def cause_of(exc: BaseException, root: Path, nodeid: str, group_by: str = "cause") -> str:
    frames = frames_from_traceback(exc.__traceback__, root)
    rule = fp.rule_for(nodeid, frames, group_by)
    return compute(nodeid, type(exc).__name__, str(exc), frames, rule=rule)


def test_a_failure_in_the_code_under_test_is_grouped_across_tests(tmp_path: Path) -> None:
    shop = load(tmp_path / "shop.py", PRODUCT)
    first = raised(lambda: shop.price(1))
    second = raised(lambda: shop.price(2))
    frames = frames_from_traceback(first.__traceback__, tmp_path)
    assert fp.rule_for("tests/test_a.py::test_one", frames) == "cause"
    assert cause_of(first, tmp_path, "tests/test_a.py::test_one") == cause_of(
        second, tmp_path, "tests/test_b.py::test_two"
    )
    # group_by = "test" keeps them apart, as version 1 did
    assert cause_of(first, tmp_path, "tests/test_a.py::test_one", "test") != cause_of(
        second, tmp_path, "tests/test_b.py::test_two", "test"
    )


def test_a_failure_in_the_test_itself_stays_per_test(tmp_path: Path) -> None:
    exc = raised(load(tmp_path / "tests" / "test_app.py", APP).test_it)
    frames = frames_from_traceback(exc.__traceback__, tmp_path)
    assert fp.rule_for(NODEID, frames) == "test"
    assert cause_of(exc, tmp_path, NODEID) != cause_of(exc, tmp_path, NODEID + "_too")


def test_cause_differs_by_raise_site_type_and_message(tmp_path: Path) -> None:
    shop = load(
        tmp_path / "shop.py", PRODUCT + "\n\ndef stock(item):\n    raise LookupError(item)\n"
    )
    base = cause_of(raised(lambda: shop.price(1)), tmp_path, NODEID)
    assert base != cause_of(raised(lambda: shop.stock(1)), tmp_path, NODEID)  # other site
    other = load(tmp_path / "other.py", PRODUCT.replace("LookupError", "KeyError"))
    assert base != cause_of(raised(lambda: other.price(1)), tmp_path, NODEID)


def test_rules_never_share_fingerprints() -> None:
    parts = ("test_x.py", "ImportError", "boom")
    assert len({fp.compute_for(rule, *parts) for rule in ("cause", "collection", "fixture")}) == 3
