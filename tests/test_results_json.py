"""The results JSON writer's fast path for plain results writes what ``json.dumps`` would."""

from __future__ import annotations

import json

import pytest

from rp_bts_agent.model import (
    Attribute,
    Launch,
    Plain,
    RunResults,
    TestResult,
    dumps_results,
    plain_row,
    result_to_json,
    to_plain,
)

LAUNCH = Launch('launch "q" é', "run-1", environment={"ci": "ü"}, attributes=(Attribute("k", "v"),))


def reference(results: list[TestResult]) -> str:
    data = {
        "format": 1,
        "launch": to_plain(LAUNCH),
        "results": [result_to_json(r) for r in results],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


@pytest.mark.parametrize("nodeid", ["t.py::a", 'dir/t.py::b[é-"q"\\x]', "t.py::c\n\t\x01\u2028"])
@pytest.mark.parametrize("outcome", ["passed", "skipped", "xfailed", "xpassed"])
@pytest.mark.parametrize("phase", ["call", "setup"])
@pytest.mark.parametrize(
    "duration", [0.0, -0.0, 5e-324, 1e-7, 0.25, 1e300, float("nan"), float("inf")]
)
def test_plain_row_is_what_json_dumps_writes(
    nodeid: str, outcome: str, phase: str, duration: float
) -> None:
    plain: Plain = (nodeid, outcome, phase, duration)  # type: ignore[assignment]
    result = TestResult(*plain)
    assert plain_row(*plain) == json.dumps(
        result_to_json(result), ensure_ascii=False, separators=(",", ":")
    )
    assert dumps_results(LAUNCH, [plain]) == reference([result])


def test_mixed_run_keeps_order_and_matches_run_results_dumps() -> None:
    failed = TestResult(
        "t.py::f", "failed", exc_type="E", message="m", fingerprint="fp",
        attributes=(Attribute("a", "b"),),
    )  # fmt: skip
    plain: Plain = ("t.py::p", "passed", "call", 0.5)
    results = [TestResult(*plain), failed, TestResult("t.py::s", "skipped", "setup")]
    mixed: list[TestResult | Plain] = [plain, failed, ("t.py::s", "skipped", "setup", 0.0)]
    assert dumps_results(LAUNCH, mixed) == reference(results)
    assert RunResults(LAUNCH, tuple(results)).dumps() == reference(results)
    assert RunResults.from_json(json.loads(dumps_results(LAUNCH, mixed))).results == tuple(results)
