"""Sauce Labs: job links, job updates, the connection test and the replay of unsent updates.

Links carry the job's auth token (HMAC-MD5 keyed with ``username:access_key`` over the job id,
as Sauce Labs documents for shareable links), never the access key. Job updates are sent from
the process that ran the test; one that fails is one line, changes no verdict and is kept as a
JSON line under ``.rp-bts/outbox/`` for ``rp-bts flush``.

Never imports pytest, and no tracker module: the plugin side lives in ``pytest_rp_bts._sauce``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

from rp_bts_agent.model import Attachment, Link
from rp_bts_agent.redact import Redactor
from rp_bts_agent.state import State

from . import SauceSettings

if TYPE_CHECKING:
    import requests

    from rp_bts_agent.config_types import Config, Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.model import TestResult
    from rp_bts_agent.tracker import AttachmentFile

log = logging.getLogger("rp_bts_agent")

#: the web app of each data centre; ``SLDC`` on a result picks one.
APP_URLS: Final = {
    "us-west-1": "https://app.saucelabs.com",
    "eu-central-1": "https://app.eu-central-1.saucelabs.com",
    "us-east-4": "https://app.us-east-4.saucelabs.com",
}
#: the REST API of each data centre (docs.saucelabs.com/dev/api, "API Base URL").
API_URLS: Final = {
    "us-west-1": "https://api.us-west-1.saucelabs.com",
    "eu-central-1": "https://api.eu-central-1.saucelabs.com",
    "us-east-4": "https://api.us-east-4.saucelabs.com",
}
#: where a job's saved files are served to holders of the job's auth token.
ASSET_URLS: Final = {
    "us-west-1": "https://assets.saucelabs.com",
    "eu-central-1": "https://assets.eu-central-1.saucelabs.com",
    "us-east-4": "https://assets.us-east-4.saucelabs.com",
}
DEFAULT_DATA_CENTER: Final = "us-west-1"
#: the assets linked from issues, mails and the report, with their titles.
LINKED_ASSETS: Final = (("video.mp4", "Sauce Labs video"), ("log.json", "Sauce Labs log"))
#: (connect, read) seconds: a Sauce Labs that does not answer costs the run one connect timeout.
TIMEOUT: Final = (5.0, 20.0)
OUTBOX_PREFIX: Final = "sauce-"
_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _settings(integration: Integration) -> SauceSettings:
    return integration.settings_as(SauceSettings)


def auth_token(username: str, access_key: str, job_id: str) -> str:
    """The job's auth token: HMAC-MD5, key ``username:access_key``, message the job id."""
    key = f"{username}:{access_key}".encode()
    return hmac.new(key, job_id.encode(), hashlib.md5).hexdigest()


def data_center_of(result: TestResult, integration: Integration | None = None) -> str:
    center = result.attribute("SLDC") or (_settings(integration).data_center if integration else "")
    return center if center in APP_URLS else DEFAULT_DATA_CENTER


def job_page_url(job_id: str, data_center: str | None = None, token: str = "") -> str:
    """The job's page (video, logs, screenshots) in the right data centre's web app."""
    app = APP_URLS.get(data_center or DEFAULT_DATA_CENTER, APP_URLS[DEFAULT_DATA_CENTER])
    url = f"{app}/tests/{quote(job_id, safe='')}"
    return f"{url}?auth={token}" if token else url


def asset_url(job_id: str, name: str, data_center: str | None, token: str) -> str:
    base = ASSET_URLS.get(data_center or DEFAULT_DATA_CENTER, ASSET_URLS[DEFAULT_DATA_CENTER])
    return f"{base}/jobs/{quote(job_id, safe='')}/{name}?auth={token}"


def integration_for(config: Config | None, data_center: str | None) -> Integration | None:
    """The Sauce Labs integration of a result: the one in its data centre, else the first."""
    if config is None:
        return None
    candidates = [
        i for i in config.of_kind("sauce") if _settings(i).username and _settings(i).access_key
    ]
    for integration in candidates:
        if (
            data_center
            and _settings(integration).data_center == data_center
            and not _settings(integration).api_url
        ):
            return integration
    return candidates[0] if candidates else None


def job_links(result: TestResult, config: Config | None = None) -> tuple[Link, ...]:
    """The Sauce Labs pages of a result with an ``SLID`` attribute, for issues, mails, reports.

    ``config`` gives the Sauce Labs integration, whose credentials sign the links (the page
    then opens without a login, and the video and log links work at all).
    """
    job = result.attribute("SLID")
    if not job:
        return ()
    integration = integration_for(config, result.attribute("SLDC"))
    center = data_center_of(result, integration)
    token = ""
    if integration is not None:
        settings = _settings(integration)
        token = auth_token(settings.username, settings.access_key, job)
    links = [Link("Sauce Labs job", job_page_url(job, center, token), key=f"saucelabs-job-{job}")]
    if token:
        links += [
            Link(title, asset_url(job, name, center, token), key=f"saucelabs-{name}-{job}")
            for name, title in LINKED_ASSETS
        ]
    return tuple(links)


# -- the REST client ---------------------------------------------------------------------------


class SauceError(Exception):
    """A Sauce Labs request that failed; the message is one line without credentials."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def api_base(integration: Integration, data_center: str | None = None) -> str:
    if _settings(integration).api_url:
        return _settings(integration).api_url.rstrip("/")
    center = data_center if data_center in API_URLS else _settings(integration).data_center
    return API_URLS.get(center or DEFAULT_DATA_CENTER, API_URLS[DEFAULT_DATA_CENTER])


def _session(integration: Integration) -> requests.Session:
    """A data centre that does not answer costs one connect timeout; 429 and 503 are waited
    out after Retry-After (rp-bts' one HTTP layer)."""
    from rp_bts_agent.http import new_session

    settings = _settings(integration)
    return new_session(settings, timeout=TIMEOUT[1], auth=(settings.username, settings.access_key))


class SauceClient:
    """The few REST calls rp-bts makes, against one data centre (or ``api_url``)."""

    def __init__(self, integration: Integration, data_center: str | None = None) -> None:
        self.integration = integration
        self.base = api_base(integration, data_center)
        self._http = _session(integration)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SauceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import requests

        try:
            response = self._http.request(
                method, self.base + path, json=body, timeout=TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            from rp_bts_agent.http import transport_error

            host = urlsplit(self.base).netloc
            raise SauceError(str(transport_error("Sauce Labs", host, exc))) from None
        if response.status_code >= 400:
            raise SauceError(
                f"{method} {path} answered HTTP {response.status_code}", response.status_code
            )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise SauceError(f"{method} {path} answered with no JSON") from None

    def _user(self) -> str:
        return quote(_settings(self.integration).username, safe="")

    def whoami(self) -> Any:
        return self._call("GET", "/rest/v1/whoami")

    def get_job(self, job_id: str) -> Any:
        return self._call("GET", f"/rest/v1/{self._user()}/jobs/{quote(job_id, safe='')}")

    def update_job(self, job_id: str, body: Mapping[str, Any]) -> Any:
        return self._call("PUT", f"/rest/v1/{self._user()}/jobs/{quote(job_id, safe='')}", body)

    def get_rdc_job(self, job_id: str) -> Any:
        return self._call("GET", f"/v1/rdc/jobs/{quote(job_id, safe='')}")

    def update_rdc_job(self, job_id: str, body: Mapping[str, Any]) -> Any:
        return self._call("PUT", f"/v1/rdc/jobs/{quote(job_id, safe='')}", body)

    def assets(self, job_id: str) -> Any:
        return self._call("GET", f"/rest/v1/{self._user()}/jobs/{quote(job_id, safe='')}/assets")


def download_assets(
    client: SauceClient,
    job_id: str,
    folder: Path,
    names: Sequence[str] = ("video.mp4", "log.json"),
    cap: int = 50 * 1024 * 1024,
) -> tuple[list[Attachment], list[str]]:
    """Save the chosen assets of a job under ``folder`` for a posted issue, each at most ``cap``
    bytes (a larger one is skipped, never cut). Returns the files and one line per skipped one.
    """
    import mimetypes

    import requests

    listing = client.assets(job_id)  # {"video": "video.mp4", "sauce-log": "log.json", ...}
    values = listing.values() if isinstance(listing, Mapping) else ()
    available = {v for v in values if isinstance(v, str)}
    files: list[Attachment] = []
    skipped: list[str] = []
    user, job = client._user(), quote(job_id, safe="")
    for name in names:
        if name not in available:
            skipped.append(f"sauce: job {job_id} has no {name}")
            continue
        path = folder / f"sauce-{_SAFE.sub('_', job_id)[:64]}-{name}"
        url = f"{client.base}/rest/v1/{user}/jobs/{job}/assets/{quote(name, safe='')}"
        try:
            with client._http.get(url, stream=True, timeout=TIMEOUT) as response:
                if response.status_code >= 400:
                    skipped.append(f"sauce: job {job_id}: {name}: HTTP {response.status_code}")
                    continue
                declared = int(response.headers.get("Content-Length") or 0)
                if declared > cap:
                    skipped.append(f"sauce: job {job_id}: {name} is over {cap} bytes; skipped")
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                size = 0
                with path.open("wb") as out:
                    for chunk in response.iter_content(64 * 1024):
                        size += len(chunk)
                        if size > cap:
                            break
                        out.write(chunk)
        except requests.RequestException as exc:
            skipped.append(f"sauce: job {job_id}: {name}: {type(exc).__name__}")
            path.unlink(missing_ok=True)
            continue
        if size > cap:
            path.unlink(missing_ok=True)
            skipped.append(f"sauce: job {job_id}: {name} is over {cap} bytes; skipped")
            continue
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        files.append(Attachment(name, str(path), mime, size))
    return files, skipped


# -- job updates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What one finished test says about its job; ``passed`` is None for a skipped test."""

    job_id: str
    name: str
    build: str = ""
    tags: tuple[str, ...] = ()
    passed: bool | None = None
    data_center: str = ""
    integration: str = ""
    #: stable for one test of one run: a replay sends the same update, never a different one.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def body(self, *, keep_failed: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name}
        if self.build:
            body["build"] = self.build
        if self.tags:
            body["tags"] = list(self.tags)
        if self.passed is not None and not (self.passed and keep_failed):
            body["passed"] = self.passed
        return body

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobUpdate:
        data = json.loads(text)
        data["tags"] = tuple(data.get("tags") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def build_name(launch: str, ci_build: str) -> str:
    return f"{launch} #{ci_build}" if ci_build else launch


def _already_failed(job: Any) -> bool:
    if not isinstance(job, Mapping):
        return False
    if job.get("passed") is False:
        return True
    return str(job.get("status", "")).lower() in ("failed", "error")


def send_update(client: SauceClient, update: JobUpdate) -> str:
    """Read the job, then update it; a job already marked failed never becomes passed.

    A job the virtual-device API does not know is looked up as a real-device (RDC) job.
    """
    try:
        job = client.get_job(update.job_id)
        rdc = False
    except SauceError as exc:
        if exc.status != 404:
            raise
        job = client.get_rdc_job(update.job_id)  # a 404 here too: no such job anywhere
        rdc = True
    body = update.body(keep_failed=_already_failed(job))
    if rdc:
        # the RDC update takes a name and a verdict only
        client.update_rdc_job(update.job_id, {k: body[k] for k in ("name", "passed") if k in body})
    else:
        client.update_job(update.job_id, body)
    verdict = {True: "passed", False: "failed", None: "no verdict"}[body.get("passed")]
    if update.passed and "passed" not in body:
        verdict = "kept failed"
    return f"sauce: job {update.job_id} updated ({verdict}{', real device' if rdc else ''})"


def outbox_dir(root: str | Path) -> Path:
    return State(root).outbox_dir


#: an outbox line ``{"sent": key}`` says the update kept under that key went through
SENT: Final = "sent"


def keep(root: str | Path, updates: Iterable[JobUpdate], tag: str) -> Path | None:
    """Append updates not sent yet to this process's outbox file (JSON lines)."""
    lines = [u.to_json() + "\n" for u in updates]
    if not lines:
        return None
    folder = outbox_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{OUTBOX_PREFIX}{tag}.jsonl"
    with path.open("a", encoding="utf-8") as out:
        out.writelines(lines)
    return path


class Updater:
    """Sends job updates as tests end, one client per (integration, data centre).

    After a data centre fails to answer, its later updates go straight to the outbox: a Sauce
    Labs outage costs the run one timeout, not one per test.
    """

    def __init__(self, config: Config, tag: str) -> None:
        self.config = config
        self.tag = tag
        self._redactor = Redactor(config.secrets())
        self._clients: dict[tuple[str, str], SauceClient] = {}
        self._down: set[tuple[str, str]] = set()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def send(self, update: JobUpdate) -> str | None:
        """Send one update; returns a one-line problem when it was kept for later, else None."""
        integration = integration_for(self.config, update.data_center or None)
        if integration is None:
            return None
        update = _scrubbed(_with_integration(update, integration), self._redactor)
        slot = (integration.name, update.data_center)
        if slot in self._down:
            keep(self.config.root, [update], self.tag)
            return None  # already said once
        client = self._clients.get(slot)
        if client is None:
            client = self._clients[slot] = SauceClient(integration, update.data_center or None)
        # kept before it is sent, marked sent after: a run killed on the way loses nothing
        try:
            kept = keep(self.config.root, [update], self.tag)
        except OSError as exc:  # still worth sending
            log.warning("rp-bts: Sauce Labs update for job %s not kept: %s", update.job_id, exc)
            kept = None
        try:
            log.info("%s", send_update(client, update))
        except SauceError as exc:
            if exc.status == 0:
                self._down.add(slot)
            return (
                f"rp-bts: Sauce Labs job {update.job_id} not updated: {exc}; "
                "kept for `rp-bts flush`"
            )
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: Sauce Labs update failed")
            return f"rp-bts: Sauce Labs job {update.job_id} not updated: {type(exc).__name__}"
        if kept is not None:
            with kept.open("a", encoding="utf-8") as out:
                out.write(json.dumps({SENT: update.key}) + "\n")
        return None


def _with_integration(update: JobUpdate, integration: Integration) -> JobUpdate:
    from dataclasses import replace

    return replace(update, integration=integration.name)


def _scrubbed(update: JobUpdate, redactor: Redactor) -> JobUpdate:
    """Secrets out of an update before Sauce Labs or the outbox sees it: a parameter id made of
    a secret is part of the test id, the job's name. The outbox key stays unique per test."""
    from dataclasses import replace

    name, build, key = (redactor.redact(v) for v in (update.name, update.build, update.key))
    if key != update.key:
        key = hashlib.sha256(update.key.encode()).hexdigest()
    return replace(update, name=name, build=build, key=key)


def flush_pending(config: Config) -> list[str]:
    """``rp-bts flush``: send the kept updates; those that fail again stay, nothing is sent twice.

    Each outbox file is claimed by renaming it first, so two flushes never send one update twice.
    """
    folder = outbox_dir(config.root)
    if not folder.is_dir():
        return []
    lines: list[str] = []
    pending: dict[str, JobUpdate] = {}
    claimed: list[Path] = []
    for path in sorted(folder.glob(f"{OUTBOX_PREFIX}*.jsonl")):
        claim = path.with_name(f"{path.name}.{os.getpid()}.flushing")
        try:
            path.rename(claim)
        except OSError:
            continue  # another flush took it
        claimed.append(claim)
        for raw in claim.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                try:
                    data = json.loads(raw)
                    if isinstance(data, dict) and set(data) == {SENT}:
                        pending.pop(str(data[SENT]), None)  # kept, then sent after all
                        continue
                    update = JobUpdate.from_json(raw)
                except (ValueError, TypeError):
                    lines.append(f"sauce: skipped an unreadable line in {path.name}")
                    continue
                pending[update.key] = update  # the last word for one test wins
    failed: list[JobUpdate] = []
    clients: dict[tuple[str, str], SauceClient] = {}
    try:
        for update in pending.values():
            integration = config.integration(update.integration)
            if integration is None or not isinstance(integration.settings, SauceSettings):
                integration = integration_for(config, update.data_center or None)
            if integration is None:
                lines.append(f"sauce: job {update.job_id}: no Sauce Labs integration; kept")
                failed.append(update)
                continue
            slot = (integration.name, update.data_center)
            if slot not in clients:
                clients[slot] = SauceClient(integration, update.data_center or None)
            try:
                lines.append(send_update(clients[slot], update))
            except SauceError as exc:
                lines.append(f"sauce: job {update.job_id}: {exc}; kept")
                failed.append(update)
    finally:
        for client in clients.values():
            client.close()
        keep(config.root, failed, f"flush-{uuid.uuid4().hex[:8]}")
        for claim in claimed:
            claim.unlink(missing_ok=True)
    return lines


def assets_of(
    results: Sequence[TestResult], config: Config, folder: Path
) -> tuple[list[AttachmentFile], list[str]]:
    """The chosen assets (``assets`` of the integration) of the failures' jobs, saved under
    ``folder`` for a new issue; one line per job or file that could not be had."""
    from rp_bts_agent.tracker import AttachmentFile

    files: list[AttachmentFile] = []
    problems: list[str] = []
    for result in results:
        job = result.attribute("SLID")
        sauce = integration_for(config, result.attribute("SLDC"))
        if not job or sauce is None or not _settings(sauce).assets:
            continue
        settings = _settings(sauce)
        try:
            with SauceClient(sauce, data_center_of(result, sauce)) as client:
                found, skipped = download_assets(
                    client, job, folder, settings.assets, settings.asset_cap
                )
        except SauceError as exc:
            problems.append(f"{result.nodeid}: Sauce Labs assets of job {job}: {exc}")
            continue
        for line in skipped:
            log.warning("%s", line)
        files += [AttachmentFile(a.name, a.path, a.mime) for a in found]
    return files, problems


# -- the connection test -----------------------------------------------------------------------


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """Ask Sauce Labs who we are; when the data centre refuses, try the others for a hint."""
    from rp_bts_agent.connection import CheckResult

    if not _settings(integration).username or not _settings(integration).access_key:
        return CheckResult(
            False,
            f"{integration.name}: username and access_key are required",
            hints=('set username = "${SAUCE_USERNAME}" and access_key = "${SAUCE_ACCESS_KEY}"',),
        )
    where = api_base(integration)
    try:
        with SauceClient(integration) as client:
            client.whoami()
    except SauceError as exc:
        first = exc
    else:
        return CheckResult(
            True, f"{integration.name}: connected to {where} as {_settings(integration).username}"
        )
    summary = f"{integration.name}: {where}: {first}"
    if first.status not in (401, 403, 404):
        return CheckResult(False, summary, hints=("check the network, api_url and TLS settings",))
    others = _answering_data_centers(integration)
    if others:
        center = others[0]
        return CheckResult(
            False,
            summary,
            hints=(
                f"the account answers in data centre {center}: "
                f'set data_center = "{center}"'
                + (" and remove api_url" if _settings(integration).api_url else ""),
            ),
        )
    return CheckResult(
        False,
        summary,
        hints=("check username and access_key (Sauce Labs: Account > User Settings)",),
    )


def _answering_data_centers(integration: Integration) -> list[str]:

    found = []
    for center in API_URLS:
        if center == _settings(integration).data_center and not _settings(integration).api_url:
            continue
        other = integration.with_settings(data_center=center, api_url="")
        try:
            with SauceClient(other) as client:
                client.whoami()
        except SauceError:
            continue
        found.append(center)
    return found


# -- WebDriver detection (no selenium import: duck typing) -------------------------------------


def remote_url(driver: object) -> str:
    """The URL a Selenium / Appium WebDriver talks to, or ''."""
    executor = getattr(driver, "command_executor", None)
    if isinstance(executor, str):
        return executor
    for holder, name in (
        (executor, "_url"),
        (getattr(executor, "_client_config", None), "remote_server_addr"),
    ):
        value = getattr(holder, name, None)
        if isinstance(value, str):
            return value
    return ""


def sauce_session(driver: object) -> tuple[str, str] | None:
    """``(job id, data centre)`` of a WebDriver whose remote is Sauce Labs, else None."""
    session_id = getattr(driver, "session_id", None)
    host = (urlsplit(remote_url(driver)).hostname or "").lower()
    if not session_id or not (host == "saucelabs.com" or host.endswith(".saucelabs.com")):
        return None
    center = next((c for c in APP_URLS if f".{c}." in f".{host}"), DEFAULT_DATA_CENTER)
    return str(session_id), center


__all__: Sequence[str] = [
    "API_URLS",
    "APP_URLS",
    "JobUpdate",
    "SauceClient",
    "SauceError",
    "Updater",
    "auth_token",
    "check_connection",
    "download_assets",
    "flush_pending",
    "job_links",
    "job_page_url",
    "sauce_session",
]
