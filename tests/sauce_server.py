"""A stateful Sauce Labs REST server on 127.0.0.1 that checks requests against its contract.

``tests/contracts/saucelabs-rest-v1.json`` is Swagger 2.0, which openapi-core does not read, so
each request under ``/rest/`` is checked here: the path must match one of the spec's templates,
the method must be declared for it, query parameters must be declared, and a JSON body is
validated with jsonschema against the spec's own definitions. Real-device jobs
(``/v1/rdc/jobs/{id}``) are not in the spec; their bodies are checked against the fields Sauce
Labs documents for an RDC job update. A violation is answered 400 and recorded; the fixture fails
the test at teardown.

Several data centres share one server: each one lives under its own path prefix
(``http://127.0.0.1:PORT/eu-central-1``), with its own accounts and jobs, so a test can point
``api_url`` (or the data centre table) at one of them.

Use it from a test module by importing ``sauce_server_fixture`` (the ``sauce_server`` fixture).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import pytest

CONTRACT = Path(__file__).resolve().parent / "contracts" / "saucelabs-rest-v1.json"
CENTERS = ("us-west-1", "eu-central-1", "us-east-4")
RDC_UPDATE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "passed": {"type": "boolean"}},
}
ASSETS = {"video.mp4": b"\x00\x00\x00 ftypmp42 fake video", "log.json": b"[]"}


@cache
def contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CONTRACT.read_text(encoding="utf-8"))
    return data


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in contract()["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        out.append((re.compile(f"^{pattern}$"), template))
    # literal segments before templated ones: /jobs/{id}/assets is not /jobs/{id}/{assetName}
    out.sort(key=lambda pair: pair[1].count("{"))
    return out


def _parameters(operation: dict[str, Any], item: dict[str, Any]) -> list[dict[str, Any]]:
    shared = contract().get("parameters", {})
    params = []
    for param in [*item.get("parameters", ()), *operation.get("parameters", ())]:
        ref = param.get("$ref")
        params.append(shared[ref.rsplit("/", 1)[-1]] if ref else param)
    return params


def check_request(method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
    """Contract violations of one request under ``/rest/`` (an empty list when it conforms)."""
    paths = contract()["paths"]
    template = next((t for pattern, t in _templates() if pattern.match(path)), None)
    if template is None:
        return [f"{method} {path}: no such path in the contract"]
    item = paths[template]
    operation = item.get(method.lower())
    if operation is None:
        return [f"{method} {path}: method not declared for {template}"]
    problems = []
    params = _parameters(operation, item)
    declared = {p["name"] for p in params if p.get("in") == "query"}
    problems += [
        f"{method} {path}: undeclared query parameter {q!r}" for q in query if q not in declared
    ]
    body_param = next((p for p in params if p.get("in") == "body"), None)
    if body_param is None and body is not None:
        problems.append(f"{method} {path}: a body where the contract takes none")
    elif body_param is not None:
        if body is None:
            if body_param.get("required"):
                problems.append(f"{method} {path}: the contract requires a body")
        else:
            schema = {**body_param["schema"], "definitions": contract()["definitions"]}
            problems += [
                f"{method} {path}: body: {e.message}"
                for e in jsonschema.Draft4Validator(schema).iter_errors(body)
            ]
    return problems


@dataclass
class Center:
    """One data centre: its accounts and its jobs."""

    accounts: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rdc_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)


class SauceLabs:
    """The state and the request log; tests add accounts and jobs and read what changed."""

    def __init__(self) -> None:
        self.centers = {c: Center() for c in CENTERS}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, str, Any]] = []
        #: HTTP status answered to every job update while set (an outage of the update API)
        self.fail_updates = 0
        #: how many requests are answered 429 with ``Retry-After: 1`` before any is served
        self.throttle = 0
        self.lock = threading.Lock()
        self.url = ""

    def base(self, center: str) -> str:
        return f"{self.url}/{center}"

    def add_account(self, username: str, access_key: str, center: str = "us-west-1") -> None:
        self.centers[center].accounts[username] = access_key

    def add_job(
        self, job_id: str, owner: str, center: str = "us-west-1", *, rdc: bool = False, **kw: Any
    ) -> dict[str, Any]:
        if rdc:
            job = {"id": job_id, "name": None, "status": "complete", "passed": None, **kw}
            self.centers[center].rdc_jobs[job_id] = job
        else:
            job = {
                "id": job_id,
                "owner": owner,
                "name": None,
                "build": None,
                "tags": [],
                "passed": None,
                "status": "complete",
                **kw,
            }
            self.centers[center].jobs[job_id] = job
        return job

    def job(self, job_id: str, center: str = "us-west-1") -> dict[str, Any]:
        c = self.centers[center]
        return copy.deepcopy(c.jobs.get(job_id) or c.rdc_jobs[job_id])

    def updates(self) -> list[tuple[str, str, Any]]:
        return [(c, p, b) for m, c, p, b in self.requests if m == "PUT"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, payload: Any = None, raw: bytes | None = None, retry_after: str = ""
    ) -> None:
        data = (
            raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        center, _, rest = url.path.lstrip("/").partition("/")
        path = "/" + rest
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            state.violations.append(f"{method} {path}: body is not JSON")
            return self._reply(400, {"message": "bad json"})
        with state.lock:
            state.requests.append((method, center, path, body))
        if center not in state.centers:
            return self._reply(404, {"message": "no such data centre"})
        if path.startswith("/rest/"):
            problems = check_request(method, path, parse_qs(url.query), body)
        elif re.fullmatch(r"/v1/rdc/jobs/[^/]+", path) and method in ("GET", "PUT"):
            problems = []
            if method == "PUT":
                problems = [
                    f"PUT {path}: body: {e.message}"
                    for e in jsonschema.Draft4Validator(RDC_UPDATE).iter_errors(body)
                ]
        else:
            problems = [f"{method} {path}: not a Sauce Labs endpoint"]
        if problems:
            state.violations += problems
            return self._reply(400, {"message": "; ".join(problems)})
        with state.lock:
            throttled = state.throttle > 0
            state.throttle -= int(throttled)
        if throttled:
            return self._reply(429, {"message": "slow down"}, retry_after="1")
        dc = state.centers[center]
        user = self._user(dc)
        if user is None:
            return self._reply(401, {"message": "Not authorized"})
        with state.lock:
            self._serve(state, dc, user, method, path, body)

    def _user(self, dc: Center) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        name, _, key = base64.b64decode(header[6:]).decode().partition(":")
        return name if dc.accounts.get(name) == key and key else None

    def _serve(
        self, state: SauceLabs, dc: Center, user: str, method: str, path: str, body: Any
    ) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["rest", "v1", "whoami"]:
            return self._reply(200, {"username": user, "id": user})
        if parts[:2] == ["v1", "rdc"]:
            job = dc.rdc_jobs.get(parts[3])
            if job is None:
                return self._reply(404, {"message": "job not found"})
            if method == "PUT":
                if state.fail_updates:
                    return self._reply(state.fail_updates, {"message": "unavailable"})
                job.update(body)
                job["status"] = "passed" if job.get("passed") else "failed"
            return self._reply(200, job)
        if len(parts) >= 5 and parts[2] == user and parts[3] == "jobs":
            job = dc.jobs.get(parts[4])
            if job is None or job["owner"] != user:
                return self._reply(404, {"message": "job not found"})
            if len(parts) == 5 and method == "GET":
                return self._reply(200, job)
            if len(parts) == 5 and method == "PUT":
                if state.fail_updates:
                    return self._reply(state.fail_updates, {"message": "unavailable"})
                job.update(body)
                return self._reply(200, job)
            if parts[5:] == ["assets"]:
                return self._reply(200, {"video": "video.mp4", "sauce-log": "log.json"})
            if len(parts) == 7 and parts[5] == "assets" and parts[6] in ASSETS:
                return self._reply(200, raw=ASSETS[parts[6]])
        return self._reply(404, {"message": "not found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: SauceLabs


@pytest.fixture(name="sauce_server")
def sauce_server_fixture() -> Iterator[SauceLabs]:
    """A fresh Sauce Labs on 127.0.0.1; the test fails if any request broke the contract."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = SauceLabs()
    server.state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    if server.state.violations:
        pytest.fail("Sauce Labs contract violations:\n" + "\n".join(server.state.violations))
