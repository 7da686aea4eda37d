"""The HTML report: self-contained, escaped, with outcomes, issue badges and attachment links."""

from __future__ import annotations

import base64
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rp_bts_agent.integrations.sauce.client import job_links
from rp_bts_agent.model import (
    Attachment,
    Attribute,
    IssueRef,
    Launch,
    Link,
    RunResults,
    TestResult,
)
from rp_bts_agent.report import ATTACHMENT_LIMIT, render, render_capped

#: a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_is_self_contained_and_escaped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parametrize("x", ["<script>alert(1)</script>"])
        def test_bad(x, rp_bts):
            rp_bts.attach(b"log", name="run.log")
            raise ValueError(x)
        def test_good():
            pass
        """
    )
    result = pytester.runpytest("--rp-bts", "--rp-bts-report=out/report.html")
    result.stdout.fnmatch_lines(["report: out/report.html"])
    html = (pytester.path / "out" / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    parser = _Collect()
    parser.feed(html)
    tags = [tag for tag, _ in parser.tags]
    assert "script" not in tags
    external = [
        a
        for _, a in parser.tags
        for k in ("src", "href")
        if (a.get(k) or "").startswith(("http:", "https:", "//"))
    ]
    assert external == []
    (attachment,) = [a["href"] for tag, a in parser.tags if tag == "a" and a.get("href")]
    assert attachment is not None
    assert (pytester.path / "out" / attachment).read_bytes() == b"log"
    assert re.search(r"LOCAL-1\s+created, Open", html)
    assert "<summary>1 passed</summary>" in html  # passing tests: one compact list
    assert re.search(r'class="o failed">failed', html)


def _job_links(job: str) -> tuple[Link, ...]:
    """A Sauce Labs job's links, as the pipeline puts them on a result."""
    return job_links(TestResult("t.py::t", "failed", attributes=(Attribute("SLID", job),)))


def _big_run(failing: int, text: str) -> RunResults:
    results = [
        TestResult(
            f"tests/test_mod_{i % 50}.py::TestCase::test_case_{i}[param-{i}]",
            "failed" if i < failing else "passed",
            duration=0.5,
            exc_type="AssertionError" if i < failing else "",
            longrepr=text if i < failing else "",
            attributes=(Attribute("SLID", f"job-{i}"),) if i < failing else (),
            links=_job_links(f"job-{i}") if i < failing else (),
            issues=(
                IssueRef("Shop bugs", f"SHOP-{i}", f"https://jira.example.com/browse/SHOP-{i}"),
            )
            if i < failing
            else (),
        )
        for i in range(20_000)
    ]
    return RunResults(Launch("nightly", "run-1", project="shop"), tuple(results))


@pytest.mark.parametrize(
    ("failing", "text"),
    [
        (1_000, "E   assert 'x' == \"y\" <> &\n" * 3_000),  # some large failures, hard to escape
        (20_000, "E   assert 1 == 2\n" * 4_000),  # everything fails, at length
    ],
)
def test_twenty_thousand_tests_stay_near_ten_megabytes(failing: int, text: str) -> None:
    html = render(_big_run(failing, text), Path("."))
    assert len(html.encode("utf-8")) <= 10_600_000
    assert html.count('class="o failed"') == failing
    assert html.count('class="o passed"') == 20_000 - failing
    assert "characters in all]" in html
    capped = render_capped(_big_run(failing, text))
    assert len(capped.encode("utf-8")) <= ATTACHMENT_LIMIT
    assert re.search(r"\d+ more failures not shown", capped)
    assert 'class="o passed"' not in capped


def test_undecodable_text_and_unsafe_links(tmp_path: Path) -> None:
    image = tmp_path / "shot.png"
    image.write_bytes(PNG)
    result = TestResult(
        "t.py::test_x[<b>\r\n]",
        "failed",
        longrepr="bytes \udcfe\udcff NUL \x00 <script>alert(1)</script>",
        attachments=(Attachment("shot.png", str(image), "image/png", len(PNG)),),
        issues=(IssueRef("t", "T-1", "javascript:alert(1)", "Open", "linked"),),
    )
    launch = Launch("n", "r", environment={"ci_job": "javascript:alert(2)"})
    html = render(RunResults(launch, (result,)), tmp_path)
    assert "bytes \\xfe\\xff NUL \\x00 &lt;script&gt;" in html
    assert "javascript:" not in html and "<script" not in html and "<b>" not in html
    html.encode("utf-8")  # no lone surrogates left
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in html


#: a Chromium or Chrome executable to use instead of the one on PATH
CHROMIUM_ENV = "RP_BTS_TEST_CHROMIUM"
GET_CHROMIUM = (
    "no Chromium to open the report in: install Debian's chromium (`apt-get install chromium`,"
    f" as .ci/run does), or set {CHROMIUM_ENV} to a Chromium or Chrome executable (for example"
    " the one `python -m playwright install chromium` puts under ~/.cache/ms-playwright/)"
)


def _chromium() -> str:
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            pytest.fail(f"{CHROMIUM_ENV}={chosen} is not an executable file")
        return chosen
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else ""
    )
    if not path:
        pytest.skip(GET_CHROMIUM)
    return path


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    """The report opens with no console error and no request leaving the file; a screenshot."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'"
    )
    executable = _chromium()
    image = tmp_path / "shot.png"
    image.write_bytes(PNG)
    failing = TestResult(
        "tests/test_shop.py::test_checkout[<script>alert(1)</script>]",
        "failed",
        duration=1.5,
        exc_type="AssertionError",
        longrepr="def test_checkout():\n>       assert total == 42\nE       assert 41 == 42\n",
        attributes=(Attribute("SLID", "abc123"),),
        links=_job_links("abc123"),
        attachments=(Attachment("shot.png", str(image), "image/png", len(PNG)),),
        issues=(IssueRef("Shop bugs", "SHOP-7", "https://jira.example.com/browse/SHOP-7", "Open"),),
    )
    run = RunResults(
        Launch("nightly", "run-1", project="shop", start=1.0, end=75.0),
        (failing, TestResult("tests/test_shop.py::test_home", "passed", duration=0.2)),
    )
    report = tmp_path / "report.html"
    report.write_text(render(run, tmp_path), encoding="utf-8")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.click("summary")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            body = page.inner_text("body")
            dialogs = page.evaluate("typeof window.alert")  # the page loaded, no script ran
        finally:
            context.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert dialogs == "function"
    assert "test_checkout[<script>alert(1)</script>]" in body
    assert "assert 41 == 42" in body and "SHOP-7 created, Open" in body
    assert "Sauce Labs job" in body and "1 failed, 1 passed" in body
    assert (tmp_path / "report.png").stat().st_size > 1_000
