"""Sauce Labs: each test's job gets its status, name, build and tags as the test ends; results,
issues, mails and the report link to the job and its video; chosen assets go onto new issues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import TlsSettings, choice, number, secret, text, texts

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Config, Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.kinds import LiveReporter
    from rp_bts_agent.model import Link, TestResult
    from rp_bts_agent.tracker import AttachmentFile


@dataclass(frozen=True, slots=True)
class SauceSettings(TlsSettings):
    """``kind = "sauce"``: one account in one data centre (or a proxy at ``api_url``)."""

    username: str = text()
    access_key: str = secret()
    data_center: str = choice("us-west-1", "eu-central-1", "us-east-4")
    api_url: str = text(help="the REST API's base URL, instead of the data centre's")
    driver_fixture: str = text("driver", "a fixture whose WebDriver names the job")
    #: job assets to download and attach to posted issues, each at most asset_cap bytes
    assets: tuple[str, ...] = texts()
    asset_cap: int = number(50 * 1024 * 1024)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .client import check_connection

    return check_connection(integration, options)


def _flush(config: Config) -> list[str]:
    from .client import flush_pending

    return flush_pending(config)


def _live(config: Config, launch: str, run_id: str, tag: str) -> LiveReporter:
    from .live import JobReporter

    return JobReporter(config, launch=launch, run_id=run_id, tag=tag)


def _links(result: TestResult, config: Config) -> tuple[Link, ...]:
    if result.attribute("SLID") is None:
        return ()
    from .client import job_links

    return job_links(result, config)


def _attachments(
    results: Sequence[TestResult], config: Config, folder: Path
) -> tuple[list[AttachmentFile], list[str]]:
    from .client import assets_of

    return assets_of(results, config, folder)


KIND = Kind(
    name="sauce",
    settings=SauceSettings,
    summary="Sauce Labs job status, links and assets",
    check=_check,
    flush=_flush,
    live=_live,
    links=_links,
    attachments=_attachments,
)
