"""Facts about where the run happened: Python, platform, plugin version, CI job link."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from typing import Final

from . import __version__

#: (variable that marks the CI, how to build the job URL from the environment, build number var)
_CI_JOB_URLS: Final = (
    ("GITHUB_ACTIONS", "{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/actions/runs/{GITHUB_RUN_ID}"),
    ("GITLAB_CI", "{CI_JOB_URL}"),
    ("JENKINS_URL", "{BUILD_URL}"),
    ("CIRCLECI", "{CIRCLE_BUILD_URL}"),
    ("BUILDKITE", "{BUILDKITE_BUILD_URL}"),
    ("TRAVIS", "{TRAVIS_BUILD_WEB_URL}"),
    (
        "TF_BUILD",
        "{SYSTEM_COLLECTIONURI}{SYSTEM_TEAMPROJECT}/_build/results?buildId={BUILD_BUILDID}",
    ),
)
_CI_BUILD_NUMBERS: Final = (
    "GITHUB_RUN_NUMBER",
    "CI_PIPELINE_IID",
    "BUILD_NUMBER",
    "CIRCLE_BUILD_NUM",
    "BUILDKITE_BUILD_NUMBER",
    "TRAVIS_BUILD_NUMBER",
    "BUILD_BUILDNUMBER",
)
_CI_USERS: Final = ("GITLAB_USER_EMAIL", "BUILD_REQUESTEDFOREMAIL", "GITHUB_ACTOR")


def ci_job_url(environ: Mapping[str, str]) -> str:
    """The web page of the CI job, from the usual variables of the common CI services."""
    for marker, template in _CI_JOB_URLS:
        if environ.get(marker):
            try:
                url = template.format_map(environ)
            except KeyError:
                continue
            if url.startswith(("http://", "https://")):
                return url
    return ""


def ci_build_number(environ: Mapping[str, str]) -> str:
    return next((environ[n] for n in _CI_BUILD_NUMBERS if environ.get(n)), "")


def ci_user(environ: Mapping[str, str]) -> str:
    """Who started the CI job: the launch owner when the config names none."""
    return next((environ[n] for n in _CI_USERS if environ.get(n)), "")


def describe(environ: Mapping[str, str]) -> dict[str, str]:
    facts = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        # not platform.platform(): it asks for the processor, which on Linux runs `uname -p`
        # in a subprocess, and scans the interpreter's binary for its libc, at every run's end
        "platform": f"{platform.system()}-{platform.release()}-{platform.machine()}",
        "rp_bts": __version__,
    }
    job = ci_job_url(environ)
    if job:
        facts["ci_job"] = job
    build = ci_build_number(environ)
    if build:
        facts["ci_build"] = build
    return facts
