"""The light half of the model: what a run where every test passed needs, that is the launch,
its attributes and the plain rows of the results JSON.

The rest (:mod:`rp_bts_agent.model`: results with failures, issues, attachments) loads with the
first result that needs it; its dataclasses would cost a passing run a third of the plugin's
start-up (``benchmarks/overhead.py``). :mod:`~rp_bts_agent.model` re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from .model import TestResult

RESULTS_FORMAT: Final = 1

Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
OUTCOMES: Final[frozenset[str]] = frozenset(
    ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
)
#: outcomes that the agent files: a failed test, a broken fixture, an unexpected pass under strict.
FAILING: Final[frozenset[str]] = frozenset(("failed", "error"))
#: the counts of pytest's last line, in its order (``Launch.counts``)
PYTEST_COUNTS: Final = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")


@dataclass(frozen=True, slots=True)
class Attribute:
    """A ``key:value`` attribute of a result or a launch (ReportPortal's attributes)."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Attribute:
        """``key:value`` (ReportPortal's notation); a bare ``value`` is a tag with no key."""
        key, sep, value = text.partition(":")
        if not sep:
            return cls("", text.strip())
        return cls(key.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.key}:{self.value}" if self.key else self.value


@dataclass(frozen=True, slots=True)
class Launch:
    """One run of a suite: its name, time span and attributes, as the trackers show them."""

    name: str
    run_id: str
    project: str = ""
    owner: str = ""
    start: float = 0.0
    end: float = 0.0
    attributes: tuple[Attribute, ...] = ()
    mode: str = "post"
    environment: Mapping[str, str] = field(default_factory=dict)
    #: pytest's own tally ("failed", "passed", "error", ...), counted per phase report as pytest
    #: counts it; empty when the results came from elsewhere (then counted from the results)
    counts: Mapping[str, int] = field(default_factory=dict)


def to_plain(value: Any) -> Any:
    """Dataclasses to JSON-ready values, without dataclasses.asdict's deep copies."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


#: a result with nothing but its outcome: ``(nodeid, outcome, phase, duration)``. Most results of
#: a large run are such; the agent has nothing to file, link or redact in them, so the plugin keeps
#: them as tuples and writes their rows directly, with no TestResult made for them.
Plain = tuple[str, Outcome, str, float]

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: how that encoder writes a string (ensure_ascii=False)
_encode_str: Final = json.encoder.encode_basestring
#: a plain row from its outcome to its issues, by outcome
_PLAIN_MIDDLE: Final = {
    outcome: f',"outcome":{_encode_str(outcome)},"fingerprint":"","attributes":[],"issues":[]'
    for outcome in OUTCOMES
}


def plain_row(nodeid: str, outcome: Outcome, phase: str, duration: float) -> str:
    """A plain result's row in the results JSON, exactly as ``result_to_json`` and the encoder
    write it, at a third of their cost: a 5,000-test run writes 5,000 of these."""
    middle = _PLAIN_MIDDLE.get(outcome)
    if middle is None or type(duration) is not float or not math.isfinite(duration):
        from .model import TestResult, result_to_json

        return _ENCODER.encode(result_to_json(TestResult(nodeid, outcome, phase, duration)))
    phase_json = "" if phase == "call" else f',"phase":{_encode_str(phase)}'
    duration_json = "" if duration == 0.0 else f',"duration":{float.__repr__(duration)}'
    return f'{{"nodeid":{_encode_str(nodeid)}{middle}{phase_json}{duration_json}}}'


def dumps_results(launch: Launch, results: Iterable[TestResult | Plain]) -> str:
    """The results JSON of a launch, as ``json.dumps(RunResults.to_json())`` writes it (compact,
    not ASCII-escaped, one line); plain results may stand as :data:`Plain` tuples."""
    encode = _ENCODER.encode
    rows = [
        plain_row(*result) if isinstance(result, tuple) else encode(_rich_row(result))
        for result in results
    ]
    launch_json = encode(to_plain(launch))
    return f'{{"format":{RESULTS_FORMAT},"launch":{launch_json},"results":[{",".join(rows)}]}}\n'


def _rich_row(result: TestResult) -> dict[str, Any]:
    from .model import result_to_json  # loaded already: something made the TestResult

    return result_to_json(result)


def text_safe(text: str) -> str:
    """The text with each lone surrogate (from a test that printed one, or bytes decoded with
    ``surrogateescape``) as ``?``: what the plugin captures, so that every sink (the results
    JSON, trackers, mail) can write it. The same object when there is none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
