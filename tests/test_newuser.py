"""What a new user trips over (issue 12): each test here failed before its change."""

from __future__ import annotations

import pytest

from conftest import results_json, tracker_rows

TWO_FAILURES = """
def test_a():
    assert 1 == 2

def test_b():
    raise KeyError("kiwi")
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_project_root_is_the_config_folder_whatever_the_cwd(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    """Run inside the project, then from its parent: the same issues, the same .rp-bts/."""
    project = pytester.mkdir("proj")
    (project / "rp-bts.toml").write_text('launch = "proj"\n', encoding="utf-8")
    (project / "test_x.py").write_text(TWO_FAILURES, encoding="utf-8")
    monkeypatch.chdir(project)
    pytester.runpytest_subprocess("--rp-bts")
    rows = tracker_rows(project)
    assert len(rows) == 2
    monkeypatch.chdir(pytester.path)
    second = pytester.runpytest_subprocess("--rp-bts", "proj", *(["-n", "2"] if xdist else []))
    assert tracker_rows(project) == rows  # no duplicate issue
    assert not (pytester.path / ".rp-bts").exists()
    second.stdout.fnmatch_lines(["*rp-bts: launch 'proj'*", "commented ?local? LOCAL-* test_x.py::*"])
    data = results_json(project / ".rp-bts" / "results.json")
    assert sorted(r["nodeid"] for r in data["results"]) == ["test_x.py::test_a", "test_x.py::test_b"]
