"""Sauce Labs: signed links, job updates as tests end (serial and xdist), the connection test,
the replay of unsent updates, and the access key kept out of everything."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sauce_server import SauceLabs, check_request

from conftest import all_files, by_nodeid, results_json
from rp_bts_agent.cli import main
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Config, Integration
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.flush import flush
from rp_bts_agent.integrations.sauce import client as sauce
from rp_bts_agent.model import Attribute, TestResult

USER = "shop-ci"
KEY = "canary-sauce-key-5b1e7f"


def integration(**kw: Any) -> Integration:
    values: dict[str, Any] = {
        "kind": "sauce",
        "name": "Sauce",
        "username": USER,
        "access_key": KEY,
        "data_center": "us-west-1",
    }
    return build_integration(**{**values, **kw})


def result(*attributes: tuple[str, str]) -> TestResult:
    return TestResult("t.py::test_a", "failed", attributes=tuple(Attribute(*a) for a in attributes))


@pytest.fixture
def centers(sauce_server: SauceLabs, monkeypatch: pytest.MonkeyPatch) -> SauceLabs:
    """Every data centre's API served by the test server."""
    for center in sauce.API_URLS:
        monkeypatch.setitem(sauce.API_URLS, center, sauce_server.base(center))
    return sauce_server


# -- links -------------------------------------------------------------------------------------


def test_auth_token_is_the_documented_hmac() -> None:
    # the example of Sauce Labs' "Building Links to Test Results" page
    token = sauce.auth_token(
        "example_user", "123456-asdf-8dcf81f1fc71", "5f9fef27854ca50a3c132ce331cb6034"
    )
    assert token == "3fca4184e106622adf2d33d8023271c1"


def test_links_are_signed_in_the_right_data_center() -> None:
    config = Config(integrations=(integration(data_center="eu-central-1"),))
    links = sauce.job_links(result(("SLID", "job-9")), config)
    token = hmac.new(f"{USER}:{KEY}".encode(), b"job-9", hashlib.md5).hexdigest()
    urls = [link.url for link in links]
    assert urls == [
        f"https://app.eu-central-1.saucelabs.com/tests/job-9?auth={token}",
        f"https://assets.eu-central-1.saucelabs.com/jobs/job-9/video.mp4?auth={token}",
        f"https://assets.eu-central-1.saucelabs.com/jobs/job-9/log.json?auth={token}",
    ]
    assert not any(KEY in url for url in urls)
    # SLDC on the result wins over the integration's data centre
    us = sauce.job_links(result(("SLID", "job-9"), ("SLDC", "us-east-4")), config)
    assert us[0].url.startswith("https://app.us-east-4.saucelabs.com/tests/job-9?auth=")
    # without credentials: the page only, which needs a login
    assert [link.url for link in sauce.job_links(result(("SLID", "job-9")))] == [
        "https://app.saucelabs.com/tests/job-9"
    ]
    assert sauce.job_links(result()) == ()


def test_several_sauce_integrations_sign_with_the_one_of_the_data_center() -> None:
    us = integration(name="US", access_key="us-key-1234")
    eu = integration(name="EU", access_key="eu-key-5678", data_center="eu-central-1")
    config = Config(integrations=(us, eu))
    link = sauce.job_links(result(("SLID", "j"), ("SLDC", "eu-central-1")), config)[0]
    assert link.url.endswith("?auth=" + sauce.auth_token(USER, "eu-key-5678", "j"))


def test_webdriver_detection() -> None:
    class Executor:
        _url = "https://ondemand.eu-central-1.saucelabs.com:443/wd/hub"

    class Driver:
        session_id = "abc123"
        command_executor = Executor()

    assert sauce.sauce_session(Driver()) == ("abc123", "eu-central-1")
    Executor._url = "https://ondemand.saucelabs.com/wd/hub"
    assert sauce.sauce_session(Driver()) == ("abc123", "us-west-1")
    Executor._url = "http://localhost:4444/wd/hub"
    assert sauce.sauce_session(Driver()) is None
    Executor._url = "https://saucelabs.com.evil.example/wd/hub"
    assert sauce.sauce_session(Driver()) is None


# -- the contract checker of the test server ----------------------------------------------------


def test_server_contract_check_catches_bad_requests() -> None:
    assert check_request("PUT", f"/rest/v1/{USER}/jobs/j1", {}, {"passed": True}) == []
    assert check_request("PUT", f"/rest/v1/{USER}/jobs/j1", {}, {"passed": "yes"})
    assert check_request("PUT", f"/rest/v1/{USER}/jobs/j1", {}, {"id": "j1"})  # not updatable
    assert check_request("POST", f"/rest/v1/{USER}/jobs/j1", {}, None)
    assert check_request("GET", "/rest/v1/nope", {}, None)
    assert check_request("GET", f"/rest/v1/{USER}/jobs/j1/assets", {}, None) == []


# -- job updates ------------------------------------------------------------------------------


def test_update_never_turns_a_failed_job_into_passed(centers: SauceLabs) -> None:
    centers.add_account(USER, KEY)
    centers.add_job("ok", USER)
    centers.add_job("bad", USER, passed=False, status="failed")
    centers.add_job("dev", USER, rdc=True)
    with sauce.SauceClient(integration()) as client:
        update = sauce.JobUpdate("ok", "t.py::test_a", build="nightly #7", tags=("smoke",))
        line = sauce.send_update(client, sauce.JobUpdate(**{**_fields(update), "passed": True}))
        assert line == "sauce: job ok updated (passed)"
        bad = sauce.JobUpdate("bad", "t.py::test_b", passed=True)
        assert sauce.send_update(client, bad) == "sauce: job bad updated (kept failed)"
        dev = sauce.JobUpdate("dev", "t.py::test_c", build="b", passed=False)
        assert sauce.send_update(client, dev) == "sauce: job dev updated (failed, real device)"
    job = centers.job("ok")
    assert (job["passed"], job["name"], job["build"], job["tags"]) == (
        True,
        "t.py::test_a",
        "nightly #7",
        ["smoke"],
    )
    assert centers.job("bad")["passed"] is False and centers.job("bad")["name"] == "t.py::test_b"
    assert centers.job("dev")["passed"] is False and centers.job("dev")["name"] == "t.py::test_c"


def test_429_is_retried_after_retry_after(centers: SauceLabs) -> None:
    centers.add_account(USER, KEY)
    centers.add_job("j1", USER)
    centers.throttle = 1
    started = time.monotonic()
    with sauce.SauceClient(integration()) as client:
        assert client.get_job("j1")["id"] == "j1"
    assert time.monotonic() - started >= 0.9
    assert [r[2] for r in centers.requests] == [f"/rest/v1/{USER}/jobs/j1"] * 2


def test_tls_settings_reach_the_session(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with sauce.SauceClient(integration(ca_file=str(ca))) as client:
        assert client._http.verify == str(ca)
    with sauce.SauceClient(integration(verify_tls=False)) as client:
        assert client._http.verify is False
    with sauce.SauceClient(integration(data_center="us-east-4")) as client:
        assert client._http.verify is True
        assert client.base == "https://api.us-east-4.saucelabs.com"


def test_assets_downloaded_with_a_size_cap(centers: SauceLabs, tmp_path: Path) -> None:
    centers.add_account(USER, KEY)
    centers.add_job("j1", USER)
    with sauce.SauceClient(integration()) as client:
        files, skipped = sauce.download_assets(
            client, "j1", tmp_path, names=("video.mp4", "log.json", "screenshots.zip")
        )
        assert [(f.name, f.mime) for f in files] == [
            ("video.mp4", "video/mp4"),
            ("log.json", "application/json"),
        ]
        assert Path(files[1].path).read_bytes() == b"[]"
        assert skipped == ["sauce: job j1 has no screenshots.zip"]
        files, skipped = sauce.download_assets(client, "j1", tmp_path / "small", cap=5)
        assert [f.name for f in files] == ["log.json"]
        assert skipped == ["sauce: job j1: video.mp4 is over 5 bytes; skipped"]


def _fields(update: sauce.JobUpdate) -> dict[str, Any]:
    return {name: getattr(update, name) for name in update.__dataclass_fields__}


def test_failed_update_is_kept_then_flushed_once(centers: SauceLabs, tmp_path: Path) -> None:
    centers.add_account(USER, KEY)
    centers.add_job("j1", USER)
    config = Config(integrations=(integration(),), root=str(tmp_path))
    centers.fail_updates = 500
    updater = sauce.Updater(config, "run-1")
    problem = updater.send(sauce.JobUpdate("j1", "t.py::test_a", passed=False, key="run-1:a"))
    updater.close()
    assert problem is not None and "\n" not in problem
    assert "j1 not updated" in problem and "rp-bts flush" in problem
    kept = list((tmp_path / ".rp-bts" / "outbox").glob("sauce-*.jsonl"))
    assert len(kept) == 1 and KEY not in kept[0].read_text()
    assert flush(config) == ["sauce: job j1: PUT /rest/v1/shop-ci/jobs/j1 answered HTTP 500; kept"]
    centers.fail_updates = 0
    assert flush(config) == ["sauce: job j1 updated (failed)"]
    assert flush(config) == []  # nothing is sent twice
    assert centers.job("j1")["passed"] is False
    assert len(centers.updates()) == 3


def test_an_update_is_kept_until_it_is_sent(
    centers: SauceLabs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded before it is sent (a run killed on the way loses nothing); once sent, a flush
    sends it no second time."""
    centers.add_account(USER, KEY)
    centers.add_job("j1", USER)
    centers.add_job("j2", USER)
    config = Config(integrations=(integration(),), root=str(tmp_path))
    updater = sauce.Updater(config, "run-1")
    assert updater.send(sauce.JobUpdate("j1", "t.py::test_a", passed=False, key="a")) is None

    def killed(client: sauce.SauceClient, update: sauce.JobUpdate) -> str:
        raise KeyboardInterrupt  # the CI job is cancelled while the update is on its way

    with monkeypatch.context() as patched:
        patched.setattr(sauce, "send_update", killed)
        with pytest.raises(KeyboardInterrupt):
            updater.send(sauce.JobUpdate("j2", "t.py::test_b", passed=False, key="b"))
    updater.close()
    assert len(centers.updates()) == 1
    assert flush(config) == ["sauce: job j2 updated (failed)"]  # j1 went through already
    assert flush(config) == []
    assert len(centers.updates()) == 2


def test_a_secret_in_the_test_id_is_neither_sent_nor_kept(
    centers: SauceLabs, tmp_path: Path
) -> None:
    centers.add_account(USER, KEY)
    centers.add_job("j1", USER)
    config = Config(integrations=(integration(),), root=str(tmp_path))
    name = f"t.py::test_a[{KEY}]"  # an id pytest made from a parameter, named explicitly
    centers.fail_updates = 500
    updater = sauce.Updater(config, "run-1")
    assert updater.send(sauce.JobUpdate("j1", name, passed=False, key=f"run-1:{name}"))
    updater.close()
    (kept,) = (tmp_path / ".rp-bts" / "outbox").glob("sauce-*.jsonl")
    assert KEY not in kept.read_text()
    centers.fail_updates = 0
    assert flush(config) == ["sauce: job j1 updated (failed)"]
    assert centers.job("j1")["name"] == "t.py::test_a[***]"
    assert KEY not in json.dumps(centers.requests)


def test_down_data_center_costs_one_timeout(tmp_path: Path) -> None:
    config = Config(integrations=(integration(api_url="http://127.0.0.1:9"),), root=str(tmp_path))
    updater = sauce.Updater(config, "run-2")
    first = updater.send(sauce.JobUpdate("j1", "a", passed=True))
    second = updater.send(sauce.JobUpdate("j2", "b", passed=True))
    updater.close()
    assert first is not None and "cannot connect" in first
    assert second is None  # said once; kept quietly
    (kept,) = (tmp_path / ".rp-bts" / "outbox").glob("sauce-*.jsonl")
    assert len(kept.read_text().splitlines()) == 2


# -- the connection test ----------------------------------------------------------------------


def test_connection_ok_wrong_data_center_and_wrong_key(centers: SauceLabs) -> None:
    centers.add_account(USER, KEY, "eu-central-1")
    ok = check(integration(data_center="eu-central-1"), CheckOptions())
    assert ok.ok, ok.summary
    wrong = check(integration(), CheckOptions())
    assert not wrong.ok and "HTTP 401" in wrong.summary
    assert wrong.hints == (
        'the account answers in data centre eu-central-1: set data_center = "eu-central-1"',
    )
    bad_key = check(integration(data_center="eu-central-1", access_key="wrong-key"), CheckOptions())
    assert not bad_key.ok
    assert bad_key.hints == ("check username and access_key (Sauce Labs: Account > User Settings)",)
    for answer in (ok, wrong, bad_key):
        assert KEY not in answer.summary + "".join(answer.hints)


def test_cli_integrations_test_gives_the_data_center_hint(
    centers: SauceLabs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    centers.add_account(USER, KEY, "us-east-4")
    monkeypatch.setenv("SAUCE_ACCESS_KEY", KEY)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "no-global.toml"))
    (tmp_path / "rp-bts.toml").write_text(
        f"""
[[integrations]]
kind = "sauce"
name = "Sauce"
username = "{USER}"
access_key = "${{SAUCE_ACCESS_KEY}}"
data_center = "eu-central-1"
""",
        encoding="utf-8",
    )
    assert main(["--root", str(tmp_path), "integrations", "test", "Sauce"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"FAILED: Sauce: {centers.base('eu-central-1')}: GET /rest/v1/whoami answered HTTP 401",
        'hint: the account answers in data centre us-east-4: set data_center = "us-east-4"',
    ]
    assert KEY not in out


# -- end to end ------------------------------------------------------------------------------

DEMO = """
import pytest

class Executor:
    _url = "https://ondemand.us-west-1.saucelabs.com/wd/hub"

class FakeDriver:
    command_executor = Executor()
    def __init__(self, session_id):
        self.session_id = session_id
    def quit(self):
        self.session_id = None

@pytest.fixture
def driver():
    d = FakeDriver("drv-1")
    yield d
    d.quit()

@pytest.mark.slid("mark-1")
@pytest.mark.smoke
def test_marker_passes():
    pass

def test_fixture_fails(rp_bts):
    rp_bts.slid("fix-1")
    assert 1 == 2

def test_driver_passes(driver):
    assert driver.session_id

@pytest.mark.slid("was-failed")
def test_cannot_unfail():
    pass

def test_no_job():
    pass
"""


@pytest.fixture
def sauce_demo(
    pytester: pytest.Pytester, sauce_server: SauceLabs, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    sauce_server.add_account(USER, KEY)
    for job in ("mark-1", "fix-1", "drv-1"):
        sauce_server.add_job(job, USER)
    sauce_server.add_job("was-failed", USER, passed=False, status="failed")
    monkeypatch.setenv("SAUCE_USERNAME", USER)
    monkeypatch.setenv("SAUCE_ACCESS_KEY", KEY)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "42")
    pytester.makepyfile(test_demo=DEMO)
    pytester.makeini("[pytest]\nmarkers =\n    smoke: quick checks\n")
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": f"""
launch = "nightly"

[[integrations]]
kind = "sauce"
name = "Sauce"
username = "${{SAUCE_USERNAME}}"
access_key = "${{SAUCE_ACCESS_KEY}}"
api_url = "{sauce_server.base("us-west-1")}"
"""
        },
    )
    return pytester


def _check_jobs(server: SauceLabs) -> None:
    expected = {
        "mark-1": (True, "test_demo.py::test_marker_passes", ["smoke"]),
        "fix-1": (False, "test_demo.py::test_fixture_fails", []),
        "drv-1": (True, "test_demo.py::test_driver_passes", []),
        "was-failed": (False, "test_demo.py::test_cannot_unfail", []),
    }
    for job_id, (passed, name, tags) in expected.items():
        job = server.job(job_id)
        assert (job["passed"], job["name"], job["build"], job["tags"]) == (
            passed,
            name,
            "nightly #42",
            tags,
        ), job_id


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_jobs_updated_as_tests_end(
    sauce_demo: pytest.Pytester, sauce_server: SauceLabs, xdist: bool
) -> None:
    args = ["--rp-bts", "--rp-bts-report=report.html"]
    args += ["-n", "2"] if xdist else ["-p", "no:xdist"]
    if xdist:
        pytest.importorskip("xdist")
    result = sauce_demo.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    _check_jobs(sauce_server)
    assert len(sauce_server.updates()) == 4
    data = by_nodeid(results_json(sauce_demo.path / ".rp-bts" / "results.json"))
    assert {"key": "SLID", "value": "drv-1"} in data["test_driver_passes"]["attributes"]
    assert {"key": "SLDC", "value": "us-west-1"} in data["test_driver_passes"]["attributes"]
    report = (sauce_demo.path / "report.html").read_text(encoding="utf-8")
    token = sauce.auth_token(USER, KEY, "fix-1")
    assert f"https://app.saucelabs.com/tests/fix-1?auth={token}" in report
    assert f"https://assets.saucelabs.com/jobs/fix-1/video.mp4?auth={token}" in report
    output = result.stdout.str() + result.stderr.str()
    assert "sauce: " not in output  # nothing went wrong: no problem line
    assert (
        f"Sauce Labs job: test_demo.py::test_fixture_fails: https://app.saucelabs.com/tests/fix-1?auth={token}"
        in output
    )
    # the canary: the access key is nowhere in the output or the files of the run
    assert KEY not in output
    for path in all_files(sauce_demo.path):
        assert KEY.encode() not in path.read_bytes(), path


def test_sauce_outage_changes_no_verdict_and_is_flushed(
    sauce_demo: pytest.Pytester, sauce_server: SauceLabs, capsys: pytest.CaptureFixture[str]
) -> None:
    without = sauce_demo.runpytest_subprocess("-p", "no:rp_bts")
    sauce_server.fail_updates = 500
    result = sauce_demo.runpytest_subprocess("--rp-bts", "-p", "no:xdist")
    assert result.ret == without.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["rp-bts: Sauce Labs job mark-1 not updated: *HTTP 500; kept for `rp-bts flush`"]
    )
    assert sauce_server.job("mark-1")["passed"] is None
    sauce_server.fail_updates = 0
    assert main(["--root", str(sauce_demo.path), "flush"]) == 0
    flushed = capsys.readouterr().out
    assert "sauce: job mark-1 updated (passed)" in flushed
    assert "sauce: job was-failed updated (kept failed)" in flushed
    _check_jobs(sauce_server)
    assert main(["--root", str(sauce_demo.path), "flush"]) == 0
    assert "sauce: job" not in capsys.readouterr().out
    for path in all_files(sauce_demo.path):
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in result.stdout.str() + flushed


def test_update_is_sent_when_the_test_ends_not_at_session_end(
    sauce_demo: pytest.Pytester, sauce_server: SauceLabs
) -> None:
    sauce_demo.makepyfile(
        test_zz_later=f"""
import base64, json, os, urllib.request

def test_earlier_job_already_updated():
    request = urllib.request.Request("{sauce_server.base("us-west-1")}/rest/v1/{USER}/jobs/mark-1")
    auth = base64.b64encode(f"{USER}:{{os.environ['SAUCE_ACCESS_KEY']}}".encode()).decode()
    request.add_header("Authorization", "Basic " + auth)
    with urllib.request.urlopen(request) as answer:
        assert json.load(answer)["passed"] is True
"""
    )
    result = sauce_demo.runpytest_subprocess("--rp-bts", "-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=5, failed=1)


def test_sldc_routes_an_update_to_its_data_center(centers: SauceLabs, tmp_path: Path) -> None:
    centers.add_account(USER, KEY, "eu-central-1")
    centers.add_job("eu-job", USER, "eu-central-1")
    config = Config(integrations=(integration(),), root=str(tmp_path))
    updater = sauce.Updater(config, "run-3")
    update = sauce.JobUpdate("eu-job", "t.py::test_eu", passed=True, data_center="eu-central-1")
    assert updater.send(update) is None
    updater.close()
    assert centers.job("eu-job", "eu-central-1")["passed"] is True


def test_dry_run_sends_nothing(sauce_demo: pytest.Pytester, sauce_server: SauceLabs) -> None:
    sauce_demo.runpytest_subprocess("--rp-bts", "--rp-bts-mode=dry-run", "-p", "no:xdist")
    assert sauce_server.requests == []
    assert json.dumps(sauce_server.job("mark-1"))  # untouched


def test_chosen_assets_are_attached_to_the_posted_issue(
    sauce_demo: pytest.Pytester, sauce_server: SauceLabs
) -> None:
    config = sauce_demo.path / "rp-bts.toml"
    config.write_text(
        config.read_text() + '\nassets = ["log.json", "screenshots.zip"]\nasset_cap = 1000000\n'
    )
    sauce_demo.runpytest("--rp-bts", "-k", "fixture_fails")
    db = sauce_demo.path / ".rp-bts" / "tracker.db"
    with closing(sqlite3.connect(db)) as conn:
        names = [name for (name,) in conn.execute("SELECT name FROM attachments")]
    assert "log.json" in names  # the job has it
    assert "screenshots.zip" not in names  # the job has none: skipped, the issue still filed
