"""A plain ``pip install .`` (not editable) into a fresh virtualenv: a working plugin and CLI."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


class Installed(NamedTuple):
    bin: Path
    env: dict[str, str]
    src: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """rp-bts, pytest-xdist and the example third-party kind, installed as a user would."""
    tmp_path = tmp_path_factory.mktemp("install")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RP_BTS"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    src = tmp_path / "src"  # a copy, so the build cannot pick up the editable install's files
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".rp-bts", "*.egg-info", "build", "__pycache__", ".tox"
        ),
    )
    install = _run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "-q",
        src,
        src / "examples" / "markdown_kind",
        "pytest-xdist",
        cwd=tmp_path,
        env=env,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return Installed(bin_dir, env, src)


@pytest.mark.slow
def test_pip_install_then_demo(installed: Installed, tmp_path: Path) -> None:
    bin_dir, env = installed.bin, installed.env
    demo = tmp_path / "examples"
    shutil.copytree(
        REPO / "examples", demo, ignore=shutil.ignore_patterns(".rp-bts", "__pycache__")
    )
    python = str(bin_dir / "python")
    plain = _run(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=demo, env=env)
    first = _run(python, "-m", "pytest", "--rp-bts", "-p", "no:cacheprovider", cwd=demo, env=env)
    assert first.returncode == plain.returncode == 1, first.stdout[-3000:]
    assert "= rp-bts =" in first.stdout
    assert "<html" in (demo / ".rp-bts" / "report.html").read_text(encoding="utf-8")
    (eml,) = (demo / ".rp-bts" / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]).strip().startswith("[shop] launch 'demo' #")

    listed = _run(bin_dir / "rp-bts", "issues", "list", "--json", cwd=demo, env=env)
    assert listed.returncode == 0, listed.stderr
    issues = json.loads(listed.stdout)
    fingerprints = {i["fingerprint"] for i in issues}
    assert len(issues) == len(fingerprints) >= 5
    results = {
        r["nodeid"]: r
        for r in json.loads((demo / ".rp-bts" / "results.json").read_text())["results"]
    }
    kiwi = [
        results[f"test_shop.py::{name}"]
        for name in ("test_unknown_item", "test_cart_with_unknown_item")
    ]
    assert {r["grouped_by"] for r in kiwi} == {"cause"}  # one broken function, one issue
    assert len({r["issues"][0]["key"] for r in kiwi}) == 1

    second = _run(python, "-m", "pytest", "--rp-bts", "-p", "no:cacheprovider", cwd=demo, env=env)
    assert second.returncode == plain.returncode
    again = json.loads(
        _run(bin_dir / "rp-bts", "issues", "list", "--json", cwd=demo, env=env).stdout
    )
    assert [i["key"] for i in again] == [i["key"] for i in issues]
    assert all(i["comments"] == 1 for i in again)

    shutil.rmtree(demo / ".rp-bts")
    parallel = _run(
        python, "-m", "pytest", "--rp-bts", "-n", "2", "-p", "no:cacheprovider", cwd=demo, env=env
    )
    assert parallel.returncode == plain.returncode, parallel.stdout[-3000:]
    in_parallel = json.loads(
        _run(bin_dir / "rp-bts", "issues", "list", "--json", cwd=demo, env=env).stdout
    )
    assert {i["fingerprint"] for i in in_parallel} == fingerprints


@pytest.mark.slow
def test_a_third_party_kind_installed_beside_files_issues(
    installed: Installed, tmp_path: Path
) -> None:
    """examples/markdown_kind is a package of its own, found through the rp_bts.kinds entry
    point: no rp-bts module names it, and a run files into it like into any tracker."""
    demo = tmp_path / "examples"
    shutil.copytree(
        REPO / "examples", demo, ignore=shutil.ignore_patterns(".rp-bts", "__pycache__")
    )
    config = demo / "rp-bts.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[[integrations]]\nkind = "markdown"\nname = "Notes"\nfolder = "issues"\n',
        encoding="utf-8",
    )
    python = str(installed.bin / "python")
    rp_bts = installed.bin / "rp-bts"
    run = _run(
        python, "-m", "pytest", "--rp-bts", "-p", "no:cacheprovider", cwd=demo, env=installed.env
    )
    assert "[Notes] MD-1" in run.stdout, run.stdout[-3000:]
    files = sorted((demo / "issues").glob("MD-*.md"))
    results = json.loads((demo / ".rp-bts" / "results.json").read_text(encoding="utf-8"))
    filed = [r for r in results["results"] if any(i["integration"] == "Notes" for i in r["issues"])]
    assert len(files) == len({r["fingerprint"] for r in filed}) >= 5  # one per fingerprint
    assert not (demo / ".rp-bts" / "tracker.db").exists()  # nothing went to the local tracker
    again = _run(
        python, "-m", "pytest", "--rp-bts", "-p", "no:cacheprovider", cwd=demo, env=installed.env
    )
    assert again.returncode == run.returncode == 1
    assert sorted((demo / "issues").glob("MD-*.md")) == files  # a rerun comments, files none
    assert all(f.read_text(encoding="utf-8").count("\n## Run ") == 1 for f in files)
    listed = _run(rp_bts, "integrations", "list", "--json", cwd=demo, env=installed.env)
    (row,) = json.loads(listed.stdout)
    assert (row["kind"], row["folder"]) == ("markdown", str(demo / "issues"))
    checked = _run(rp_bts, "integrations", "test", "Notes", cwd=demo, env=installed.env)
    assert checked.returncode == 0 and "issues go to" in checked.stdout, checked.stdout
