"""ruff and mypy --strict are part of the test run, so CI fails on a lint or type error; and the
repository stands alone (nothing refers to a folder beside it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: a path out of the repository to the workspace's shared folder, as code or docs would write it
OUTSIDE = re.compile(rb"\.\./shared\b|parents\[\d+\]\s*/\s*[\"']shared[\"']")


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return path


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "fmt"])
def test_ruff(args: list[str]) -> None:
    done = subprocess.run([_tool("ruff"), *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_strict(tmp_path: Path) -> None:
    # mypy cannot map the directory agent/ to the module rp_bts_agent: check an installed copy.
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    done = subprocess.run(
        [
            _tool("mypy"),
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "rp_bts_agent",
            "-p",
            "pytest_rp_bts",
        ],
        cwd=tmp_path,
        env={"MYPYPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_repository_stands_alone() -> None:
    """Nothing reads from beside the repository, where a fresh clone has nothing: the API
    contracts the tests use are vendored in ``tests/contracts/``."""
    found = []
    for top in ("tests", "benchmarks", "agent", "pytest_rp_bts", "examples"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                for number, line in enumerate(path.read_bytes().splitlines(), 1):
                    if OUTSIDE.search(line):
                        found.append(
                            f"{path.relative_to(REPO)}:{number}: {line.decode(errors='replace')}"
                        )
    assert found == [], "\n".join(found)
