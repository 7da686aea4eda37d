"""The HTML report: self-contained, escaped, with outcomes, issue badges and attachment links."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest


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
    assert re.search(r'class="o passed">passed', html)
    assert re.search(r'class="o failed">failed', html)
