"""The e-mail server integration against real SMTP servers: STARTTLS + AUTH, implicit TLS, plain.

Rules, recipients and content are read back from the MIME the server received.
"""

from __future__ import annotations

import dataclasses
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from smtp_server import PASSWORD, USER, Server, free_port

from conftest import results_json
from rp_bts_agent.cli import main
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Config, Integration, Rule
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.deadline import time_limit
from rp_bts_agent.flush import flush
from rp_bts_agent.hooks import HookManager
from rp_bts_agent.integrations.email import smtp
from rp_bts_agent.model import Attribute, IssueRef, Launch, Link, RunResults, TestResult
from rp_bts_agent.notify import keep_pending, notify
from rp_bts_agent.state import State

SERVERS = ("starttls_server", "ssl_server", "plain_server")


def _integration(server: Server, **changes: object) -> Integration:
    integration = build_integration(
        kind="email",
        name="Team mail",
        host=server.host,
        port=server.port,
        security=server.security,
        ca_file=server.ca_file,
        sender="QA Bot <qa@example.com>",
        auth=server.auth,
        username=USER if server.auth else "",
        password=PASSWORD if server.auth else "",
    )
    return integration.with_settings(**changes)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    found: Server = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def hooks() -> HookManager:
    return HookManager()


def _config(tmp_path: Path, server: Server | None, *rules: Rule, owner: str = "") -> Config:
    integrations = (_integration(server),) if server is not None else ()
    return Config(
        project="shop", owner=owner, integrations=integrations, rules=rules, root=str(tmp_path)
    )


def _run(
    *results: TestResult,
    name: str = "nightly",
    attrs: tuple[str, ...] = (),
    owner: str = "",
) -> RunResults:
    launch = Launch(
        name,
        "run-7",
        project="shop",
        owner=owner,
        attributes=tuple(Attribute.parse(a) for a in attrs),
        environment={"ci_build": "42", "ci_job": "https://ci.example.com/job/42"},
    )
    return RunResults(launch, results)


FAILED = TestResult(
    "tests/test_shop.py::test_checkout",
    "failed",
    exc_type="AssertionError",
    message="assert 1 == 2",
    longrepr="def test_checkout():\n>   assert 1 == 2\nE   assert 1 == 2",
    attributes=(Attribute("SLID", "abc123"),),
    issues=(IssueRef("Shop bugs", "SHOP-7", "https://jira.example.com/browse/SHOP-7", "Open"),),
    # the pipeline puts a result's links on it once; the mail shows them
    links=(Link("Sauce Labs job", "https://app.saucelabs.com/tests/abc123", "saucelabs-job"),),
)
UNLINKED = TestResult("tests/test_shop.py::test_cart", "error", exc_type="RuntimeError")
PASSED = TestResult("tests/test_shop.py::test_home", "passed")


def test_send_through_each_security(server: Server, tmp_path: Path, hooks: HookManager) -> None:
    rule = Rule("team", send_case="failed", recipients=("team@example.com", "OWNER"))
    config = _config(tmp_path, server, rule)
    run = _run(FAILED, UNLINKED, PASSED, attrs=("env:prod",), owner="lead@example.com")
    (notice,) = notify(config, run, hooks)
    assert notice.error == "" and notice.sent_via == "Team mail"
    (got,) = server.inbox.received
    assert sorted(got.rcpt_tos) == ["lead@example.com", "team@example.com"]
    assert got.mail_from == "qa@example.com"
    msg = got.message
    assert msg["Subject"] == "[shop] launch 'nightly' #42 finished: 2 failed of 3"
    assert msg["From"] == "QA Bot <qa@example.com>"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    body, page = text.get_content(), html.get_content()
    for content in (body, page):
        assert "tests/test_shop.py::test_checkout" in content
        assert "SHOP-7" in content and "Open" in content
        assert "https://app.saucelabs.com/tests/abc123" in content
        assert "env:prod" in content
        assert "https://ci.example.com/job/42" in content
        assert "tests/test_home" not in content
    assert '<a href="https://jira.example.com/browse/SHOP-7">SHOP-7</a>' in page
    assert "<script" not in page.lower()
    (report,) = [p for p in msg.iter_attachments() if p.get_filename() == "rp-bts-report.html"]
    assert "test_checkout" in report.get_content()
    assert list((tmp_path / ".rp-bts" / "outbox").glob("**/*.eml")) == []
    assert PASSWORD.encode() not in got.raw


@pytest.mark.parametrize(
    ("case", "results", "sends"),
    [
        ("always", (PASSED,), True),
        ("failed", (PASSED,), False),
        ("failed", (PASSED, UNLINKED), True),
        ("to_investigate", (PASSED, FAILED), False),
        ("to_investigate", (FAILED, UNLINKED), True),
        ("more_10", (*[PASSED] * 9, FAILED), False),
        ("more_10", (*[PASSED] * 8, FAILED, FAILED), True),
        ("more_20", (*[PASSED] * 8, FAILED, FAILED), False),
        ("more_20", (*[PASSED] * 7, FAILED, FAILED, FAILED), True),
        ("more_50", (*[PASSED] * 5, *[FAILED] * 5), False),
        ("more_50", (*[PASSED] * 4, *[FAILED] * 6), True),
    ],
)
def test_send_cases_on_the_wire(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
    case: str,
    results: tuple[TestResult, ...],
    sends: bool,
) -> None:
    config = _config(tmp_path, plain_server, Rule(case, send_case=case, recipients=("a@x.org",)))
    notices = notify(config, _run(*results), hooks)
    assert len(plain_server.inbox.received) == int(sends) == len(notices)


def test_filters_disabled_rules_and_owner(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
) -> None:
    rules = (
        Rule(
            "nightly only", send_case="always", recipients=("n@x.org",), launch_names=("nightly",)
        ),
        Rule("smoke only", send_case="always", recipients=("s@x.org",), launch_names=("smoke",)),
        Rule("and", send_case="always", recipients=("and@x.org",), attributes=("env:prod", "t:a")),
        Rule(
            "and both",
            send_case="always",
            recipients=("both@x.org",),
            attributes=("env:prod", "team:web"),
        ),
        Rule(
            "or",
            send_case="always",
            recipients=("or@x.org",),
            attributes=("env:prod", "t:a"),
            attributes_operator="or",
        ),
        Rule(
            "or none",
            send_case="always",
            recipients=("ornone@x.org",),
            attributes=("env:qa", "t:a"),
            attributes_operator="or",
        ),
        Rule("off", enabled=False, send_case="always", recipients=("off@x.org",)),
        Rule("owner", send_case="always", recipients=("OWNER", "Lead@Example.com", "o@x.org")),
    )
    run = _run(PASSED, attrs=("env:prod", "team:web"), owner="lead@example.com")
    notify(_config(tmp_path, plain_server, *rules), run, hooks)
    got = {m.message["X-RP-BTS-Rule"]: sorted(m.rcpt_tos) for m in plain_server.inbox.received}
    assert got == {
        "nightly only": ["n@x.org"],
        "and both": ["both@x.org"],
        "or": ["or@x.org"],
        "owner": ["lead@example.com", "o@x.org"],
    }


def test_owner_unknown_is_a_notice(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
) -> None:
    rule = Rule("owner", send_case="always", recipients=("OWNER",))
    (notice,) = notify(_config(tmp_path, plain_server, rule), _run(PASSED), hooks)
    assert notice.error == "no recipients (OWNER is not known)"
    assert plain_server.inbox.received == []


def test_injection_and_undecodable_output(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
) -> None:
    evil = TestResult(
        "t.py::test_x[<b>bold</b>\r\nBcc: evil@example.com\r\n]",
        "failed",
        message="<img src=x onerror=alert(1)> \udcff\x00\x1b[31m\r\nX-Evil: 1",
        longrepr="bad bytes \udcfe\udcff and \x00 NUL",
        stdout="\udc80",
        issues=(IssueRef("t", "T-1", "javascript:alert(1)", "Open", "linked"),),
    )
    rule = Rule("r\r\nX-Injected: yes", send_case="failed", recipients=("a@x.org",))
    notify(_config(tmp_path, plain_server, rule), _run(evil, name="n\r\nBcc: e@x.org"), hooks)
    (got,) = plain_server.inbox.received
    assert got.rcpt_tos == ["a@x.org"]
    msg = got.message
    assert msg["Bcc"] is None and msg["X-Evil"] is None and msg["X-Injected"] is None
    assert "\n" not in str(msg["Subject"]).replace("\n ", "")
    html = msg.get_body(("html",))
    assert html is not None
    page = html.get_content()
    assert "<b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<img" not in page and "javascript:" not in page
    assert "\\xff\\x00\\x1b[31m" in page
    (report,) = msg.iter_attachments()
    attached = report.get_content()
    assert "bad bytes \\xfe\\xff and \\x00 NUL" in attached
    assert "<img" not in attached and "<b>" not in attached and "javascript:" not in attached
    for part in msg.walk():
        if not part.is_multipart():
            content = part.get_content()
            assert "\x00" not in content


def test_a_message_is_kept_until_it_is_sent(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recorded before it is sent (a run killed while sending loses nothing), gone once sent."""
    pending = tmp_path / ".rp-bts" / "outbox" / "pending"
    rule = Rule("team", send_case="always", recipients=("team@example.com",))
    config = _config(tmp_path, plain_server, rule)
    (notice,) = notify(config, _run(PASSED), hooks)
    assert notice.sent_via == "Team mail" and list(pending.glob("*.eml")) == []

    def killed(integration: Integration, message: EmailMessage) -> None:
        raise KeyboardInterrupt  # the CI job is cancelled while the message is on its way

    monkeypatch.setattr("rp_bts_agent.integrations.email.smtp.send", killed)
    with pytest.raises(KeyboardInterrupt):
        notify(config, _run(PASSED), hooks)
    assert len(list(pending.glob("*.eml"))) == 1
    monkeypatch.undo()
    (kept,) = pending.glob("*.eml")
    assert flush(config) == [f"sent: mail {kept.name} to team@example.com via 'Team mail'"]
    assert len(plain_server.inbox.received) == 2


def test_unreachable_server_keeps_the_message_for_flush(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
) -> None:
    rule = Rule("team", send_case="always", recipients=("team@example.com",))
    down = dataclasses.replace(plain_server, port=free_port())
    config = _config(tmp_path, down, rule)
    (notice,) = notify(config, _run(PASSED), hooks)
    assert notice.error.startswith(f"cannot reach 127.0.0.1:{down.port}")
    line = notice.describe(tmp_path)
    assert "\n" not in line and "kept for `rp-bts flush` in .rp-bts/outbox/pending/" in line
    (kept,) = (tmp_path / ".rp-bts" / "outbox" / "pending").glob("*.eml")
    # the server is back: flush sends it once, and a second flush has nothing to do
    config = _config(tmp_path, plain_server, rule)
    (sent,) = flush(config)
    assert sent.startswith(f"sent: mail {kept.name} to team@example.com")
    assert not kept.exists()
    assert flush(config) == []
    (got,) = plain_server.inbox.received
    assert got.rcpt_tos == ["team@example.com"]
    assert got.message["Subject"].startswith("[shop] launch 'nightly'")


def test_flush_failure_keeps_the_message(tmp_path: Path) -> None:
    keep_pending(State(tmp_path), EmailMessage(), "m")
    (line,) = flush(Config(root=str(tmp_path)))
    assert line == "failed: mail m.eml: no e-mail integration configured"
    assert (tmp_path / ".rp-bts" / "outbox" / "pending" / "m.eml").exists()


def test_refused_login_is_one_line_without_the_password(
    starttls_server: Server,
    tmp_path: Path,
    hooks: HookManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = PASSWORD[::-1]
    bad = _integration(starttls_server, password=wrong)
    rule = Rule("team", send_case="always", recipients=("team@example.com",))
    config = dataclasses.replace(_config(tmp_path, starttls_server, rule), integrations=(bad,))
    (notice,) = notify(config, _run(PASSED), hooks)
    assert notice.error == (
        f"127.0.0.1:{starttls_server.port} refused the login of 'mailer' (535); "
        "check username and password"
    )
    assert starttls_server.inbox.received == []
    result = check(bad, CheckOptions())
    assert not result.ok and result.summary == notice.error
    for text in (notice.describe(), result.summary, *capsys.readouterr()):
        assert wrong not in text and PASSWORD not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes()


def test_tls_problems_are_one_line(
    ssl_server: Server,
    starttls_server: Server,
    plain_server: Server,
) -> None:
    untrusted = _integration(ssl_server, ca_file="")
    result = check(untrusted, CheckOptions())
    assert not result.ok
    assert result.summary.startswith(f"TLS certificate of 127.0.0.1:{ssl_server.port} not trusted")
    assert check(untrusted.with_settings(verify_tls=False), CheckOptions()).ok
    no_tls = _integration(plain_server, security="starttls")
    summary = check(no_tls, CheckOptions()).summary
    assert summary == f"127.0.0.1:{plain_server.port} does not offer STARTTLS; " + (
        "set security = 'ssl' or 'none' to match the server"
    )
    wrong_port = _integration(starttls_server, security="ssl")
    result = check(wrong_port, CheckOptions())
    assert not result.ok and "\n" not in result.summary


def test_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp, "READ_TIMEOUT", 0.3)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        integration = build_integration(kind="email", name="m", host="127.0.0.1", port=port)
        result = check(integration, CheckOptions())
    assert (
        result.summary == f"127.0.0.1:{port} did not answer in time; check host, port and firewall"
    )


def test_connection_check_sends_a_test_message(server: Server) -> None:
    integration = _integration(server)
    result = check(integration, CheckOptions(to="me@example.com"))
    assert result.ok, result.summary
    assert result.summary.startswith("sent a test message to me@example.com")
    (got,) = server.inbox.received
    assert got.rcpt_tos == ["me@example.com"]
    assert "test message" in str(got.message["Subject"])
    assert check(integration, CheckOptions()).ok
    assert len(server.inbox.received) == 1


def test_cli_test_and_flush_never_show_the_password(
    starttls_server: Server,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The canary: a run, `integrations test` and `flush` with a down server, then an up one."""
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    rules = '[[rules]]\nname = "all"\nsend_case = "always"\nrecipients = ["team@example.com"]\n'
    config = pytester.path / "rp-bts.toml"
    down = dataclasses.replace(starttls_server, port=free_port())
    config.write_text('project = "shop"\n' + down.integration_toml() + rules)
    pytester.makepyfile(
        f"""
        def test_leak():
            print("{PASSWORD}")
            assert 0, "{PASSWORD}"
        """
    )
    outputs = []
    run = pytester.runpytest("--rp-bts", "--rp-bts-report=report.html", "-rA")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    run.stdout.fnmatch_lines(["mail      'all' to team@example.com not sent: cannot reach *"])
    outputs.append(run.stdout.str() + run.stderr.str())
    capsys.readouterr()
    config.write_text('project = "shop"\n' + starttls_server.integration_toml() + rules)
    root = ["--root", str(pytester.path)]
    for args in (("integrations", "test", "Team mail", "--to", "me@example.com"), ("flush",)):
        code = main([*root, *args])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        outputs.append(out + err)
    assert outputs[1].startswith("ok: sent a test message to me@example.com")
    assert outputs[2].startswith("sent: mail ")
    assert len(starttls_server.inbox.received) == 2
    for text in outputs:
        assert PASSWORD not in text
    for received in starttls_server.inbox.received:
        assert PASSWORD.encode() not in received.raw
    for path in pytester.path.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_down_server_leaves_a_green_run_green(
    plain_server: Server,
    pytester: pytest.Pytester,
) -> None:
    down = dataclasses.replace(plain_server, port=free_port())
    rules = '[[rules]]\nname = "all"\nsend_case = "always"\nrecipients = ["team@example.com"]\n'
    (pytester.path / "rp-bts.toml").write_text(down.integration_toml() + rules)
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.OK
    lines = [line for line in result.outlines if line.startswith("mail ")]
    assert len(lines) == 1 and "not sent: cannot reach 127.0.0.1:" in lines[0]
    assert len(list((pytester.path / ".rp-bts" / "outbox" / "pending").glob("*.eml"))) == 1
    (pytester.path / "rp-bts.toml").write_text(plain_server.integration_toml() + rules)
    again = pytester.runpytest("--rp-bts")
    assert again.ret == pytest.ExitCode.OK
    # a run sends what earlier runs kept first, then its own message
    assert len(plain_server.inbox.received) == 2
    assert list((pytester.path / ".rp-bts" / "outbox" / "pending").glob("*.eml")) == []
    again.stdout.fnmatch_lines(["flush: *"])


class _RaisingHook:
    def rp_bts_email(self, message: EmailMessage, launch: Launch, rule_name: str) -> None:
        raise RuntimeError(f"boom with {PASSWORD}")


def connect_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The timeout of every connection made from here on, in order."""
    used: list[float | None] = []
    real = socket.create_connection

    def spy(address: tuple[str, int], timeout: float, *args: Any) -> socket.socket:
        used.append(timeout)
        return real(address, timeout, *args)

    monkeypatch.setattr(socket, "create_connection", spy)
    return used


def test_a_raising_email_hook_drops_the_message(
    plain_server: Server,
    tmp_path: Path,
    hooks: HookManager,
) -> None:
    hooks.register(_RaisingHook())
    rule = Rule("team", send_case="always", recipients=("team@example.com",))
    config = dataclasses.replace(
        _config(tmp_path, plain_server, rule),
        integrations=(_integration(plain_server, password=PASSWORD),),
    )
    (notice,) = notify(config, _run(PASSED), hooks)
    assert notice.error == "an rp_bts_email hook raised RuntimeError: boom with ***"
    assert plain_server.inbox.received == []


def test_timeouts_five_seconds_to_connect_twenty_per_reply(
    ssl_server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (smtp.CONNECT_TIMEOUT, smtp.READ_TIMEOUT) == (5.0, 20.0)
    used = connect_timeouts(monkeypatch)
    client = smtp._open(_integration(ssl_server))
    try:
        assert used == [5.0]
        assert client.sock is not None and client.sock.gettimeout() == 20.0
    finally:
        client.quit()


# -- issue 11, point 3: the run end's time budget bounds mail too ------------------------------

BUDGET = 5


class _Stalling(socketserver.StreamRequestHandler):
    """An SMTP server that accepts the connection and then never answers (``delay`` None), or
    answers each line ``delay`` seconds late."""

    delay: float | None = None

    def handle(self) -> None:
        if self.delay is None:
            self.rfile.read()  # holds the connection, silent, until the client hangs up
            return
        self._answer(b"220 slow ESMTP")
        in_data = False
        for line in self.rfile:
            if in_data:
                in_data = line != b".\r\n"
                if not in_data:
                    self._answer(b"250 queued")
                continue
            command = line[:4].upper()
            in_data = command == b"DATA"
            self._answer({b"DATA": b"354 go on", b"QUIT": b"221 bye"}.get(command, b"250 OK"))

    def _answer(self, text: bytes) -> None:
        time.sleep(self.delay or 0)
        self.wfile.write(text + b"\r\n")


@pytest.fixture(params=["no answer", "slow answers"])
def stalling_port(request: pytest.FixtureRequest) -> Iterator[int]:
    handler = type("Handler", (_Stalling,), {"delay": None if "no" in request.param else 3.0})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


FAILING = """
def test_bug_{n}():
    assert {n} == -1, "broken {n}"
"""
#: the session's end starts (in the controller, after xdist's workers are done): the run end
#: is from here to the process' exit
SESSION_END = """
import time

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        open({path!r}, "w").write(repr(time.time()))
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_the_run_end_keeps_mail_to_its_time_budget(
    pytester: pytest.Pytester,
    plain_server: Server,
    stalling_port: int,
    workers: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``time_budget = 5`` and an SMTP server that never answers, or answers each line 3 s late
    (its own timeouts are 5 s to connect and 20 s per reply), and a mail an earlier run kept:
    the run files its issues in the local tracker first, and its end (from the session's end
    to the process' exit) is over within budget + 1 s, both mails kept with one line each;
    once the server works, ``rp-bts flush`` sends each exactly once."""
    pytester.makepyfile(test_bugs="".join(FAILING.format(n=n) for n in range(4)))
    stamp = pytester.path / "session-end"
    pytester.makeconftest(SESSION_END.format(path=str(stamp)))
    pytester.makeini("[pytest]\n")
    rules = '[[rules]]\nname = "team"\nsend_case = "failed"\nrecipients = ["team@example.com"]\n'
    local = '[[integrations]]\nkind = "local"\nname = "Local"\n\n'
    stalling = dataclasses.replace(plain_server, port=stalling_port)
    config = pytester.path / "rp-bts.toml"
    config.write_text(
        f'project = "shop"\ntime_budget = {BUDGET}\ndefault_integration = "Local"\n\n'
        + local
        + stalling.integration_toml()
        + rules
    )
    earlier = smtp.probe_message(_integration(plain_server), "lead@example.com")
    old = keep_pending(State(pytester.path), earlier, "earlier")

    run = pytester.runpytest_subprocess("--rp-bts", "-p", "no:cacheprovider", *workers)
    took = time.time() - float(stamp.read_text())
    assert took <= BUDGET + 1, f"the run end took {took:.1f} s"
    assert run.ret == pytest.ExitCode.TESTS_FAILED  # the tests' verdict, nothing else
    output = run.stdout.str() + run.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output
    # the issues were filed before any mail, within the same budget
    refs = [
        ref
        for row in results_json(State(pytester.path).results)["results"]
        for ref in row["issues"]
    ]
    assert len(refs) == 4 and {ref["action"] for ref in refs} == {"created"}
    (kept,) = set((pytester.path / ".rp-bts" / "outbox" / "pending").glob("*.eml")) - {old}
    spent = f"the run end's time budget ({BUDGET} s) was spent"
    lines = [line for line in run.outlines if line.startswith(("mail ", "flush: "))]
    assert lines == [
        f"flush: kept: mail {old.name}: {spent}",
        f"mail      'team' to team@example.com kept for `rp-bts flush` in"
        f" .rp-bts/outbox/pending/{kept.name}: {spent}",
    ]

    config.write_text(
        config.read_text().replace(f"port = {stalling_port}", f"port = {plain_server.port}")
    )
    capsys.readouterr()
    assert main(["--root", str(pytester.path), "flush"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [
        f"sent: mail {kept.name} to team@example.com via 'Team mail'",
        f"sent: mail {old.name} to lead@example.com via 'Team mail'",
    ]
    assert main(["--root", str(pytester.path), "flush"]) == 0
    assert capsys.readouterr().out == "nothing pending\n"
    assert sorted(str(got.message["To"]) for got in plain_server.inbox.received) == [
        "lead@example.com",
        "team@example.com",
    ]
    (mail,) = [got for got in plain_server.inbox.received if got.rcpt_tos == ["team@example.com"]]
    assert "4 failed of 4" in str(mail.message["Subject"])


def test_smtp_waits_end_by_the_deadline(
    ssl_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting, the TLS handshake and every reply wait the smaller of their own timeout and
    the time left; none starts once it is spent."""
    used = connect_timeouts(monkeypatch)
    with time_limit(time.monotonic() + 2):
        client = smtp._open(_integration(ssl_server))
        try:
            assert used[0] <= 2
            assert client.sock is not None and 0 < client.sock.gettimeout() <= 2  # type: ignore[operator]
        finally:
            client.quit()
    with time_limit(time.monotonic() - 1), pytest.raises(smtp.SendError) as raised:
        smtp.send(_integration(ssl_server), smtp.probe_message(_integration(ssl_server), "a@b.c"))
    assert str(raised.value) == f"127.0.0.1:{ssl_server.port}: the time budget is spent"
    assert len(used) == 1 and ssl_server.inbox.received == []


def test_kept_mail_waits_when_the_run_end_has_no_time_left(
    plain_server: Server, tmp_path: Path, hooks: HookManager
) -> None:
    """A run's end replaying kept mail, or sending its own, past the deadline: nothing is
    tried, everything stays for ``rp-bts flush``."""
    rule = Rule("team", send_case="always", recipients=("team@example.com",))
    config = dataclasses.replace(_config(tmp_path, plain_server, rule), time_budget=BUDGET)
    keep_pending(State(tmp_path), smtp.probe_message(_integration(plain_server), "a@b.c"), "old")
    with time_limit(time.monotonic() - 1):
        assert flush(config, trackers=False) == [
            f"kept: mail old.eml: the run end's time budget ({BUDGET} s) was spent"
        ]
        (notice,) = notify(config, _run(PASSED), hooks)
    assert notice.late and notice.error == f"the run end's time budget ({BUDGET} s) was spent"
    assert plain_server.inbox.received == []
    assert len(list((tmp_path / ".rp-bts" / "outbox" / "pending").glob("*.eml"))) == 2
    assert len(flush(config)) == 2 and len(plain_server.inbox.received) == 2


def test_a_rule_sends_through_the_email_integration_it_names(
    plain_server: Server, starttls_server: Server, tmp_path: Path, hooks: HookManager
) -> None:
    """Two mail servers: a rule naming one (``email``) goes through it, one naming none through
    the first; kept for a flush while its server is down, it still goes through its own."""
    ops = dataclasses.replace(_integration(starttls_server), name="Ops mail")
    team_rule = Rule("team", send_case="always", recipients=("team@example.com",))
    ops_rule = Rule("ops", send_case="always", recipients=("ops@example.com",), email="Ops mail")
    config = Config(
        project="shop",
        integrations=(_integration(plain_server), ops),
        rules=(team_rule, ops_rule),
        root=str(tmp_path),
    )
    team, ops_notice = notify(config, _run(PASSED), hooks)
    assert (team.sent_via, ops_notice.sent_via) == ("Team mail", "Ops mail")
    assert [r.rcpt_tos for r in plain_server.inbox.received] == [["team@example.com"]]
    assert [r.rcpt_tos for r in starttls_server.inbox.received] == [["ops@example.com"]]

    down = dataclasses.replace(
        config, integrations=(config.integrations[0], ops.with_settings(port=free_port()))
    )
    _, kept = notify(down, _run(PASSED), hooks)
    assert kept.path and kept.error.startswith("cannot reach")
    (sent,) = flush(config)
    assert sent.endswith("to ops@example.com via 'Ops mail'")
    assert len(plain_server.inbox.received) == 2  # the team's second mail only
    got = starttls_server.inbox.received[-1]
    assert got.rcpt_tos == ["ops@example.com"] and "X-RP-BTS-Integration" not in got.message
