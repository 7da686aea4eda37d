"""Sauce Labs links for results that carry an ``SLID`` attribute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .model import Link

if TYPE_CHECKING:
    from .config_types import Config
    from .model import TestResult

#: the web app of each data centre; ``SLDC`` on a result picks one.
APP_URLS: Final = {
    "us-west-1": "https://app.saucelabs.com",
    "eu-central-1": "https://app.eu-central-1.saucelabs.com",
    "us-east-4": "https://app.us-east-4.saucelabs.com",
}
DEFAULT_DATA_CENTER: Final = "us-west-1"


def job_page_url(job_id: str, data_center: str | None = None) -> str:
    """The job's page (video, logs, screenshots) in the right data centre's web app."""
    app = APP_URLS.get(data_center or DEFAULT_DATA_CENTER, APP_URLS[DEFAULT_DATA_CENTER])
    return f"{app}/tests/{job_id}"


def job_links(result: TestResult, config: Config | None = None) -> tuple[Link, ...]:
    """The Sauce Labs pages of a result with an ``SLID`` attribute, for issues, mails, reports.

    ``config`` gives the Sauce Labs integration, whose credentials sign asset links.
    """
    job = result.attribute("SLID")
    if not job:
        return ()
    url = job_page_url(job, result.attribute("SLDC"))
    return (Link("Sauce Labs job", url, key=f"saucelabs-job-{job}"),)
