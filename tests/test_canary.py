"""The canary of issue 6, "nothing leaked": every secret, every sink, at once.

Each integration gets its own secret through ``${VAR}``, as users configure them; a failing suite
spills all of them into its output, logs, messages, parameter ids, attributes and attachments;
the run meets real local servers, some of them broken on purpose (a refused Jira login, a down
SMTP server, a Sauce Labs outage), and the CLI replays and lists what was left. Then every sink
is searched for every secret in every form a client could have encoded it in. Redaction that
breaks anywhere breaks this test.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from jira_server import USER as JIRA_USER
from jira_server import RunningJira
from rally_server import USER as RALLY_USER
from rally_server import RunningRally
from sauce_server import SauceLabs
from smtp_server import USER as SMTP_USER
from smtp_server import Server, free_port

from conftest import all_files

SAUCE_USER = "shop-ci"
#: variable -> (secret, the user name it is paired with in a Basic header, if any)
SECRETS: dict[str, tuple[str, str]] = {
    # "+", "/" and "=" make the URL-encoded forms differ from the secret itself
    "JIRA_TOKEN": ("cnry+Jira/Basic=4f1a9c", JIRA_USER),
    "JIRA_PAT": ("cnry-jira-pat-8b2e7d0f", ""),
    "JIRA_WRONG": ("cnry+jira/wrong=3c6f0a", JIRA_USER),
    "SMTP_PASSWORD": ("cnry+smtp/pass=9d4b1e", SMTP_USER),
    "SMTP_WRONG": ("cnry-smtp-wrong-6e2a4c", SMTP_USER),
    "SAUCE_ACCESS_KEY": ("cnry-sauce-key-2a7c5f1d", SAUCE_USER),
    "RALLY_API_KEY": ("cnry-rally-key-7b3d9e", ""),
    "CLARITY_API_KEY": ("cnry-clarity-key-1f8c2b", ""),
    "CLARITY_ACCESS_TOKEN": ("cnry-clarity-token-5a9e3d", ""),
    "CLARITY_TOKEN_SECRET": ("cnry-clarity-secret-0d6b8f", ""),
}

CONFIG = """
project = "shop"
launch = "nightly"
default_integration = "Local"

[[integrations]]
kind = "jira"
name = "Shop bugs"
url = "{cloud}"
project_key = "SHOP"
auth = "basic"
username = "{jira_user}"
password = "${{JIRA_TOKEN}}"
issue_type = "Bug"

[[integrations]]
kind = "jira"
name = "DC tasks"
url = "{dc}"
project_key = "SHOP"
auth = "pat"
token = "${{JIRA_PAT}}"
issue_type = "Task"

[[integrations]]
kind = "jira"
name = "Wrong jira"
url = "{cloud}"
project_key = "SHOP"
username = "{jira_user}"
password = "${{JIRA_WRONG}}"

[[integrations]]
kind = "rally"
name = "Rally"
url = "{rally}"
workspace = "Shop WS"
project_key = "Shop"
api_key = "${{RALLY_API_KEY}}"

[[integrations]]
kind = "clarity"
name = "Clarity"
url = "https://clarity.invalid"
project_key = "P1"
auth = "oauth1"
api_key = "${{CLARITY_API_KEY}}"
consumer_key = "rp-bts"
access_token = "${{CLARITY_ACCESS_TOKEN}}"
access_token_secret = "${{CLARITY_TOKEN_SECRET}}"

[[integrations]]
kind = "local"
name = "Local"

[[integrations]]
kind = "email"
name = "Team mail"
host = "127.0.0.1"
port = "${{SMTP_PORT}}"
security = "starttls"
ca_file = "{ca_file}"
auth = true
username = "{smtp_user}"
password = "${{SMTP_PASSWORD}}"
sender = "QA Bot <qa@example.com>"

[[integrations]]
kind = "email"
name = "Wrong mail"
host = "127.0.0.1"
port = {smtp_port}
security = "starttls"
ca_file = "{ca_file}"
auth = true
username = "{smtp_user}"
password = "${{SMTP_WRONG}}"

[[integrations]]
kind = "sauce"
name = "Sauce"
username = "{sauce_user}"
access_key = "${{SAUCE_ACCESS_KEY}}"
api_url = "{sauce}"

[[rules]]
name = "all"
send_case = "always"
recipients = ["team@example.com"]
"""

#: the suite reads the secrets from the environment, so no file of the project holds one.
SUITE = """
import base64, logging, os, sys
from urllib.parse import quote
import pytest

NAMES = os.environ["CANARY_VARS"].split(",")
SECRETS = [os.environ[name] for name in NAMES]
ALL = " ".join(SECRETS)
log = logging.getLogger("shop")


def spill(rp_bts):
    for name, value in zip(NAMES, SECRETS):
        print("stdout", name, value, quote(value, safe=""))
        print("stderr", name, value, file=sys.stderr)
        log.warning("log %s=%s", name, value)
        rp_bts.attribute(name.lower(), value)
    header = base64.b64encode(("qa@example.com:" + os.environ["JIRA_TOKEN"]).encode()).decode()
    log.error("request headers: Authorization: Basic %s", header)
    rp_bts.attach(("\\n".join(SECRETS) + "\\nBasic " + header).encode(), name="secrets.txt")


@pytest.fixture
def broken():
    raise ConnectionError("login refused for " + ALL)


@pytest.mark.slid("job-cloud")
@pytest.mark.bts(integration="Shop bugs")
def test_cloud(rp_bts):
    spill(rp_bts)
    print(("more than the 64 KiB tail: " + ALL + "\\n") * 400)
    assert ALL == "", ALL


@pytest.mark.slid("job-dc")
@pytest.mark.bts(integration="DC tasks")
@pytest.mark.parametrize(  # a generated id and an explicit one, each a secret
    "token", [os.environ["JIRA_PAT"], pytest.param("x", id="id-" + os.environ["CLARITY_API_KEY"])]
)
def test_dc(rp_bts, token):
    spill(rp_bts)
    raise RuntimeError("https://shop.example/api?access_key=" + quote(ALL, safe=""))


@pytest.mark.bts(integration="Wrong jira")
def test_refused_jira(rp_bts):
    spill(rp_bts)
    raise PermissionError(ALL)


@pytest.mark.bts(integration="Rally")
def test_rally(rp_bts):
    spill(rp_bts)
    raise KeyError(ALL)


@pytest.mark.slid("job-local")
def test_local_setup(rp_bts, broken):
    pass


def test_local_call(rp_bts):
    spill(rp_bts)
    raise AssertionError(ALL)


def test_passes():
    print(ALL)
"""


def forms(secret: str, user: str) -> set[str]:
    """The secret as written, URL-encoded, and base64-encoded alone and in a Basic header."""
    found = {secret, quote(secret, safe=""), quote_plus(secret)}
    found.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    if user:
        found.add(base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="))
    return found


#: a piece this long of a secret gives most of it away (pytest cuts long values around "...")
PIECE = 10
FORMS = {
    **{
        secret[start : start + size]: f"{var} (a piece)"
        for var, (secret, _) in SECRETS.items()
        for size in range(PIECE, len(secret))
        for start in range(len(secret) - size + 1)
    },
    **{form: var for var, (secret, user) in SECRETS.items() for form in forms(secret, user)},
}


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{12,}={0,2}")


def _base64_decoded(raw: bytes) -> bytes:
    """Every long base64-looking run of ``raw``, decoded from each of the 4 offsets it could
    start at: a secret inside any encoded blob (a Basic header, an attachment)."""
    out = []
    for run in _BASE64_RUN.findall(raw):
        for start in range(4):
            body = run[start:].rstrip(b"=")
            body = body[: len(body) - (len(body) % 4 == 1)]
            out.append(base64.b64decode(body + b"=" * (-len(body) % 4)))
    return b"\0".join(out)


def leaks(where: str, data: str | bytes) -> list[str]:
    """Which secrets ``data`` holds, in any form; escaping backslashes (JSON, wiki markup)
    are ignored, as a reader of the rendered text would."""
    raw = data.encode() if isinstance(data, str) else data
    text = b"\0".join((raw, raw.replace(b"\\", b""), _base64_decoded(raw)))
    hits = [f"{var} as {form!r}" for form, var in FORMS.items() if form.encode() in text]
    return [f"{where}: {', '.join(sorted(hits))}"] if hits else []


def mail_texts(raw: bytes) -> Iterator[str | bytes]:
    """A message as sent and every part decoded (quoted-printable hides ``=`` as ``=3D``)."""
    yield raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            yield payload if isinstance(payload, bytes) else str(payload)
    yield "\n".join(f"{k}: {v}" for k, v in message.items())


#: the test's own attachment: rp-bts keeps, copies and uploads the files a test attaches as they
#: are (README: secrets are masked in the attachments rp-bts writes), so only there may it stay.
OWN_ATTACHMENT = "secrets.txt"
_OWN_COPY = re.compile(r"\.rp-bts/(runs|attachments)/[^/]+/[0-9a-f]+-" + re.escape(OWN_ATTACHMENT))


def file_texts(root: Path) -> Iterator[tuple[str, str | bytes]]:
    """Every file of the project as bytes (SQLite databases too), mails also part by part."""
    for path in all_files(root):
        name = path.relative_to(root).as_posix()
        if _OWN_COPY.fullmatch(name):
            continue
        raw = path.read_bytes()
        for text in mail_texts(raw) if path.suffix == ".eml" else (raw,):
            yield name, text


def jira_sinks(jira: RunningJira) -> Iterator[tuple[str, str | bytes]]:
    """Everything a Jira server keeps: issues, comments, attachments, links and request lines."""
    state = jira.state
    yield "issues", json.dumps(state.issues)
    yield "comments", json.dumps(state.comments)
    yield "remote links", json.dumps([state.remote_links, state.links])
    yield "requests", json.dumps(state.requests)
    for key, attachments in state.attachments.items():
        for attachment in attachments:
            if attachment["filename"] != OWN_ATTACHMENT:
                yield f"{key} attachment {attachment['filename']}", attachment["content"]


@pytest.fixture
def canary(
    pytester: pytest.Pytester,
    make_jira: Callable[..., RunningJira],
    make_rally: Callable[..., RunningRally],
    sauce_server: SauceLabs,
    starttls_server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[pytest.Pytester, RunningJira, RunningJira, RunningRally]:
    """The project, its servers, and every secret in the environment."""
    for var, (secret, _) in SECRETS.items():
        monkeypatch.setenv(var, secret)
    monkeypatch.setenv("CANARY_VARS", ",".join(SECRETS))
    monkeypatch.setattr("smtp_server.PASSWORD", SECRETS["SMTP_PASSWORD"][0])
    cloud, dc = make_jira("cloud"), make_jira("dc")
    cloud.state.users = {JIRA_USER: SECRETS["JIRA_TOKEN"][0]}
    dc.state.tokens = {SECRETS["JIRA_PAT"][0]}
    rally = make_rally()
    rally.state.api_keys = {SECRETS["RALLY_API_KEY"][0]: RALLY_USER}
    sauce_server.add_account(SAUCE_USER, SECRETS["SAUCE_ACCESS_KEY"][0])
    for job in ("job-cloud", "job-dc", "job-local"):
        sauce_server.add_job(job, SAUCE_USER)
    config = CONFIG.format(
        cloud=cloud.url,
        dc=dc.url,
        jira_user=JIRA_USER,
        smtp_user=SMTP_USER,
        smtp_port=starttls_server.port,
        ca_file=starttls_server.ca_file,
        sauce_user=SAUCE_USER,
        sauce=sauce_server.base("us-west-1"),
        rally=rally.url,
    )
    pytester.makefile(".toml", **{"rp-bts": config})
    pytester.makepyfile(test_spill=SUITE)
    pytester.makeini("[pytest]\n")
    return pytester, cloud, dc, rally


def test_no_secret_leaks_anywhere(
    canary: tuple[pytest.Pytester, RunningJira, RunningJira, RunningRally],
    sauce_server: SauceLabs,
    starttls_server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester, cloud, dc, rally = canary
    found: set[str] = set()
    outputs: list[str] = []

    def searched(command: str, out: str) -> str:
        """The output and every file after each command: outbox files live only a while."""
        outputs.append(out)
        found.update(leaks(command, out))
        for name, text in file_texts(pytester.path):
            found.update(leaks(name, text))
        return out

    def run_pytest(*args: str) -> pytest.RunResult:
        result = pytester.runpytest_subprocess("--rp-bts", "--rp-bts-report=report.html", *args)
        out = searched(f"pytest {' '.join(args)}", result.stdout.str() + result.stderr.str())
        assert result.ret == pytest.ExitCode.TESTS_FAILED, out
        return result

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "rp_bts_agent.cli", "--root", str(pytester.path), *args],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return searched(f"rp-bts {' '.join(args)}", done.stdout + done.stderr)

    # run 1, serial: the mail server is down and Sauce Labs answers 500
    monkeypatch.setenv("SMTP_PORT", str(free_port()))
    sauce_server.fail_updates = 500
    live = ("-o", "log_cli=true", "--log-file=pytest.log", "--junitxml=junit.xml")
    first = run_pytest("-p", "no:xdist", "-rA", "-v", *live)
    first.stdout.fnmatch_lines(["*Sauce Labs job*kept*", "*not sent: cannot reach 127.0.0.1:*"])
    # run 2, two workers: the mail server is back and gets what run 1 kept first
    monkeypatch.setenv("SMTP_PORT", str(starttls_server.port))
    run_pytest("-n", "2", "-rA", "--junitxml=junit-n2.xml", "-o", "junit_logging=all")
    sauce_server.fail_updates = 0
    cli("-v", "flush")
    results = ".rp-bts/results.json"
    assert "would DC tasks: comment on SHOP-1" in cli("process", results, "--mode", "dry-run")
    assert "sent via 'Team mail'" in cli("notify", results)
    assert "HTTP 401" in cli("post", results, "test_refused_jira", "--integration", "Wrong jira")
    for args in (("list", "--status", "all"), ("list", "--json"), ("show", "LOCAL-1")):
        cli("issues", *args)
    cli("integrations", "list")
    cli("integrations", "list", "--json")
    for name in ("Shop bugs", "DC tasks", "Wrong jira", "Wrong mail", "Sauce", "Rally"):
        cli("integrations", "test", name)

    # every sink was reached, so a clean search means something
    assert "live log call" in first.stdout.str()
    assert "log JIRA_TOKEN=" in (pytester.path / "pytest.log").read_text(encoding="utf-8")
    assert "<failure" in (pytester.path / "junit-n2.xml").read_text(encoding="utf-8")
    text = "\n".join(outputs)
    assert "HTTP 401" in text and "refused the login" in text
    assert [i["fields"]["issuetype"]["name"] for i in cloud.state.issues.values()] == ["Bug"]
    assert [i["fields"]["issuetype"]["name"] for i in dc.state.issues.values()] == ["Task"]
    assert cloud.state.comments and dc.state.comments
    assert len(starttls_server.inbox.received) == 3  # run 1's (kept), run 2's, `notify`
    assert {job: sauce_server.job(job)["passed"] for job in ("job-cloud", "job-dc")} == {
        "job-cloud": False,
        "job-dc": False,
    }

    for number, received in enumerate(starttls_server.inbox.received):
        for part in mail_texts(received.raw):
            found.update(leaks(f"mail {number}", part))
    for flavour, jira in (("Jira Cloud", cloud), ("Jira DC", dc)):
        for what, kept in jira_sinks(jira):
            found.update(leaks(f"{flavour} {what}", kept))
    (defect,) = rally.state.defects()  # run 1 filed it, run 2 posted once
    assert len(rally.state.posts_of(defect["ObjectID"])) == 1
    found.update(leaks("Rally defects", json.dumps(rally.state.defects())))
    for post in rally.state.posts_of(defect["ObjectID"]):
        found.update(leaks("Rally discussion", post["Text"]))
    own = set()
    for attachment in rally.state.attachments_of(defect["ObjectID"]):
        if attachment["Name"] == OWN_ATTACHMENT:
            own.add(base64.b64encode(attachment["bytes"]).decode())
        else:
            found.update(leaks(f"Rally attachment {attachment['Name']}", attachment["bytes"]))
    assert own  # uploaded as the test attached it, like Jira's copy: the one exception
    for sent in rally.state.requests:
        content = (sent.body or {}).get("AttachmentContent", {}).get("Content")
        if content not in own:
            found.update(leaks(f"Rally {sent.method} {sent.path}", repr(sent)))
    jobs = [(c.jobs, c.rdc_jobs) for c in sauce_server.centers.values()]
    found.update(leaks("Sauce Labs requests", json.dumps(sauce_server.requests)))
    found.update(leaks("Sauce Labs jobs", json.dumps(jobs)))
    assert sorted(found) == [], "secrets leaked:\n" + "\n".join(sorted(found))
    assert "***" in (pytester.path / ".rp-bts" / "results.json").read_text(encoding="utf-8")


IDS_SECRET = "cnry-leaky-7f3a9c21"
EXPLICIT_IDS = """
import os
import pytest

SECRET = os.environ["LEAKY_TOKEN"]

@pytest.mark.parametrize("x", [1, 2], ids=[SECRET, "plain"])
def test_explicit(x):
    assert x == 0

@pytest.mark.parametrize("y", [pytest.param(1, id="tok-" + SECRET), pytest.param(2, id=SECRET)])
def test_param(y):
    assert y == 0

@pytest.mark.parametrize("z", [SECRET, pytest.param(3, id="***")])
def test_same_once_masked(z):
    pass
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_explicit_parametrize_ids_are_masked_in_pytest_lines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    """Issue 11, point 10: a secret given as an explicit id (``ids=[...]``,
    ``pytest.param(id=...)``) is masked in pytest's own lines too: the short summary,
    ``-v``, ``--collect-only -q`` and JUnit XML; xdist's workers agree on the masked ids, and
    two ids the mask made equal stay apart."""
    monkeypatch.setenv("LEAKY_TOKEN", IDS_SECRET)
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": '[[integrations]]\nkind = "email"\nname = "Mail"\nhost = "localhost"\n'
            'sender = "ci@example.com"\nusername = "ci@example.com"\n'
            'password = "${LEAKY_TOKEN}"\n'
        },
    )
    pytester.makepyfile(test_ids=EXPLICIT_IDS)
    pytester.makeini("[pytest]\n")
    workers = ["-n", "2"] if xdist else ["-p", "no:xdist"]
    collected = pytester.runpytest_subprocess("--rp-bts", "--collect-only", "-q", *workers)
    ran = pytester.runpytest_subprocess("--rp-bts", "-rA", "-v", "--junitxml=junit.xml", *workers)
    assert ran.ret == pytest.ExitCode.TESTS_FAILED
    for result in (collected, ran):
        assert IDS_SECRET not in result.stdout.str() + result.stderr.str()
    for path in all_files(pytester.path):
        if path.suffix != ".py":
            assert IDS_SECRET.encode() not in path.read_bytes(), path
    ids = [
        "test_ids.py::test_explicit[***]",
        "test_ids.py::test_explicit[plain]",
        "test_ids.py::test_param[tok-***]",
        "test_ids.py::test_param[***]",
        "test_ids.py::test_same_once_masked[***0]",
        "test_ids.py::test_same_once_masked[***1]",
    ]
    assert [line for line in collected.stdout.lines if "::" in line] == ids
    lines = ran.stdout.lines
    verbose = [line for line in lines if "%]" in line and ("PASSED" in line or "FAILED" in line)]
    for nodeid in ids:  # each -v line names its test masked
        assert any(nodeid in line for line in verbose), nodeid
    start = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    summary = lines[start:]
    assert "FAILED test_ids.py::test_explicit[***] - assert 1 == 0" in summary
    assert "FAILED test_ids.py::test_param[***] - assert 2 == 0" in summary
    assert "PASSED test_ids.py::test_same_once_masked[***1]" in summary
