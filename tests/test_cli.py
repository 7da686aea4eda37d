"""``rp-bts process``, ``post`` and ``link`` on saved results, as CI shards and people use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DEMO_FINGERPRINTS, by_nodeid, results_json, tracker_rows
from rp_bts_agent.cli import main


def _shards(demo: pytest.Pytester) -> tuple[Path, Path]:
    """Two CI shards of the demo suite, each writing results and filing nothing."""
    a, b = demo.path / "shard-a.json", demo.path / "shard-b.json"
    demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={a}", "-k", "totals")
    demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={b}", "-k", "not totals")
    assert not (demo.path / ".rp-bts" / "tracker.db").exists()  # recorded, not filed
    return a, b


def test_process_merges_shards_and_files_once(
    demo: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _shards(demo)
    merged = demo.path / "merged.json"
    root = str(demo.path)
    assert main(["--root", root, "process", str(a), str(b), "--output", str(merged)]) == 0
    rows = tracker_rows(demo.path)
    assert len(rows) == DEMO_FINGERPRINTS
    data = results_json(merged)
    assert len(data["results"]) == 10
    assert all(r["issues"] for r in data["results"] if r["outcome"] in ("failed", "error"))
    out = capsys.readouterr().out
    assert out.count("created ") == DEMO_FINGERPRINTS
    # a shard's attachment, written while it only recorded, reaches the issue
    assert ("cart.txt",) in tracker_rows(demo.path, "SELECT name FROM attachments")

    # the same shards again: nothing new is filed; each issue gets the run's one comment
    assert main(["--root", root, "process", str(a), str(b), "--output", str(merged)]) == 0
    assert tracker_rows(demo.path) == rows
    out = capsys.readouterr().out
    assert "created " not in out  # the run's own issues, found by its marker
    assert len(_lines(out, "already filed")) == DEMO_FINGERPRINTS


def test_process_rejects_a_file_that_is_not_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nope": 1}))
    assert main(["--root", str(tmp_path), "process", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json: not an rp-bts results file" in err[0]


def test_post_then_link_one_result(
    demo: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    results = demo.path / "run.json"
    demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={results}")
    root = str(demo.path)
    code = main(["--root", root, "post", str(results), "test_key", "--include", "logs"])
    assert code == 0
    ((key, summary),) = tracker_rows(demo.path, "SELECT key, summary FROM issues")
    assert summary == "test_key: KeyError: 'kiwi'"
    names = [n for (n,) in tracker_rows(demo.path, "SELECT name FROM attachments")]
    assert names == ["failure-details.txt"]  # logs included, the test's own attachment not
    posted = by_nodeid(results_json(results))["test_key"]["issues"]
    assert [(i["key"], i["action"]) for i in posted] == [(key, "created")]

    assert main(["--root", root, "link", str(results), "test_sauce", key]) == 0
    linked = by_nodeid(results_json(results))["test_sauce"]["issues"]
    assert [(i["key"], i["action"], i["status"]) for i in linked] == [(key, "linked", "Open")]
    assert f"linked    [local] {key} (Open)" in capsys.readouterr().out

    assert main(["--root", root, "post", str(results), "test_totals"]) == 2
    assert "matches 3 tests" in capsys.readouterr().err
    assert main(["--root", root, "post", str(results), "test_passes", "--include", "x"]) == 2
    assert main(["--root", root, "link", str(results), "test_sauce", "LOCAL-99"]) == 2
    assert "LOCAL-99" in capsys.readouterr().err


def test_integrations_test_local_and_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "rp-bts.toml").write_text('[[integrations]]\nkind = "local"\nname = "L"\n')
    root = str(tmp_path)
    assert main(["--root", root, "integrations", "test", "L"]) == 0
    assert capsys.readouterr().out.startswith("ok: local tracker ")
    assert main(["--root", root, "integrations", "test", "Nope"]) == 2
    assert "no integration named 'Nope' (configured: L)" in capsys.readouterr().err
    (tmp_path / "rp-bts.toml").write_text(
        '[[integrations]]\nkind = "local"\nname = "L"\npath = "file-not-dir/t.db"\n'
    )
    (tmp_path / "file-not-dir").write_text("a file where a folder should be")
    assert main(["--root", root, "integrations", "test", "L"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: cannot open ") and "hint: check that the folder" in out


def _lines(out: str, action: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"{action} [")]


def test_a_repeated_process_says_already_commented(
    demo: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, point 14: the same run's results processed twice comment once, and the
    second time say so rather than ``commented``."""
    demo.runpytest("--rp-bts")  # files the issues
    shard = demo.path / "shard.json"
    demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={shard}")
    merged, root = demo.path / "merged.json", str(demo.path)
    capsys.readouterr()
    assert main(["--root", root, "process", str(shard), "--output", str(merged)]) == 0
    assert len(_lines(capsys.readouterr().out, "commented")) == DEMO_FINGERPRINTS
    comments = tracker_rows(demo.path, "SELECT count(*) FROM comments")
    assert comments == [(DEMO_FINGERPRINTS,)]

    assert main(["--root", root, "process", str(shard), "--output", str(merged)]) == 0
    out = capsys.readouterr().out
    assert _lines(out, "commented") == []
    assert len(_lines(out, "already commented")) == DEMO_FINGERPRINTS, out
    assert tracker_rows(demo.path, "SELECT count(*) FROM comments") == comments
    actions = {i["action"] for r in results_json(merged)["results"] for i in r["issues"]}
    assert actions == {"already commented"}
