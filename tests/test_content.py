"""Issue content: what a draft says, and that Sauce Labs links in it are signed, never keyed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rp_bts_agent import kinds
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Config
from rp_bts_agent.content import comment_draft, issue_draft
from rp_bts_agent.integrations.sauce.client import auth_token
from rp_bts_agent.model import Attribute, Launch, TestResult

ACCESS_KEY = "sauce-access-key-canary-123"


def test_issue_and_comment_carry_signed_sauce_links() -> None:
    sauce = build_integration(
        kind="sauce",
        name="Sauce EU",
        username="alice",
        access_key=ACCESS_KEY,
        data_center="eu-central-1",
    )
    tracker = build_integration(kind="local", name="local")
    config = Config(integrations=(sauce, tracker))
    result = TestResult(
        "t.py::test_a",
        "failed",
        exc_type="AssertionError",
        message="assert 1 == 2",
        fingerprint="rpbts1-x",
        attributes=(Attribute("SLID", "job42"), Attribute("SLDC", "eu-central-1")),
    )
    links = kinds.get("sauce").links
    assert links is not None
    result = dataclasses.replace(result, links=links(result, config))  # as the pipeline does
    launch = Launch("nightly", "run-1")
    draft = issue_draft([result], tracker, launch, include=("logs",))
    token = auth_token("alice", ACCESS_KEY, "job42")
    urls = [link.url for link in draft.links]
    assert any("app.eu-central-1.saucelabs.com/tests/job42" in u and token in u for u in urls)
    body = draft.body.plain()
    assert token in body
    comment = comment_draft([result], launch, include=("logs",)).body.plain()
    assert token in comment
    assert ACCESS_KEY not in body + comment + " ".join(urls)


def test_log_quantity_per_integration_and_per_post() -> None:
    result = TestResult(
        "t.py::test_a",
        "failed",
        message="boom",
        fingerprint="rpbts1-y",
        log="one\ntwo\nthree\nfour\nfive",
    )
    launch = Launch("nightly", "run-1")
    two = build_integration(kind="local", name="local", log_lines=2)
    body = issue_draft([result], two, launch, include=("logs",)).body.plain()
    assert "Log (last 2 lines):\nfour\nfive" in body and "three" not in body
    body = issue_draft([result], two, launch, include=("logs",), log_lines=0).body.plain()
    assert "Log (last" not in body
    comment = comment_draft([result], launch, include=("logs",), log_lines=1).body.plain()
    assert "Log (last 1 lines):\nfive" in comment


def test_a_storm_replayed_from_the_outbox_still_reads_as_one(tmp_path: Path) -> None:
    """The outbox keeps the results, not the guard's reason: the draft still says run broken
    and lists each test's own failure in affected-tests.txt."""
    results = [
        TestResult(
            f"t.py::test_{n}",
            "failed",
            exc_type="ConnectionRefusedError" if n else "TimeoutError",
            message="connection refused" if n else "too slow",
            fingerprint="rpbts2-storm",
            grouped_by="storm",
        )
        for n in range(3)
    ]
    local = build_integration(kind="local", name="local")
    launch = Launch("nightly", "run-1")
    draft = issue_draft(results, local, launch, include=(), spool=tmp_path)
    assert draft.summary == "Run broken: 3 tests failed"
    body = draft.body.plain()
    assert "the storm guard fired" in body
    assert "t.py::test_0 (failed, call)\n" in body  # the first: its failure is the body's
    assert "t.py::test_1 (failed, call): ConnectionRefusedError: connection refused" in body
    (listed,) = [a for a in draft.attachments if a.name == "affected-tests.txt"]
    text = Path(listed.path).read_text(encoding="utf-8")
    assert text.startswith("3 test(s)") and text.count("ConnectionRefusedError") == 2
