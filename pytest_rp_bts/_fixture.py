"""The ``rp_bts`` fixture: attributes, Sauce Labs job ids and attachments from inside a test."""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Final, final

import pytest

from rp_bts_agent.model import Attachment, Attribute

from ._capture import ATTACHMENT_DIR, ITEM_STATE, ItemState

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


@final
class RpBts:
    """What a test tells rp-bts about itself; recorded on the test's result."""

    __slots__ = ("_directory", "_state")

    def __init__(self, item: pytest.Item) -> None:
        self._state = item.stash.setdefault(ITEM_STATE, ItemState())
        self._directory = item.config.stash.get(ATTACHMENT_DIR, None)

    def attribute(self, key: str, value: str) -> None:
        """Add ``key:value`` to this test's attributes (shown in issues, rules can filter)."""
        if not str(key).strip():
            raise ValueError("rp_bts.attribute: key must not be empty")
        self._state.attributes.append(Attribute(str(key), str(value)))

    def slid(self, job_id: str, data_center: str | None = None) -> None:
        """The Sauce Labs job this test ran in: attribute ``SLID`` (and ``SLDC``)."""
        if not str(job_id).strip():
            raise ValueError("rp_bts.slid: job_id must not be empty")
        self.attribute("SLID", job_id)
        if data_center:
            self.attribute("SLDC", data_center)

    def attach(
        self, path_or_bytes: str | Path | bytes, name: str | None = None, mime: str | None = None
    ) -> None:
        """Attach a file (by path) or content (bytes) to this test's issue.

        Bytes are written to disk at once, so attachments are streamed later, never held in memory.
        Never fails the test: a file that is not there (a screenshot that was not saved) is
        recorded on the result and shown in the run's summary.
        """
        try:
            if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
                data = bytes(path_or_bytes)
                name = name or "attachment.bin"
                if self._directory is None:
                    return  # rp-bts is off: nothing would read it
                self._directory.mkdir(parents=True, exist_ok=True)
                safe = _UNSAFE.sub("_", name)[-100:]
                path = self._directory / f"{uuid.uuid4().hex[:12]}-{safe}"
                path.write_bytes(data)
                size = len(data)
            else:
                source = Path(path_or_bytes).resolve()
                if not source.is_file():
                    raise FileNotFoundError(f"no such file: {source}")
                name = name or source.name
                if self._directory is None:
                    return  # rp-bts is off: nothing would read it
                # into the run's folder: a results file names files there only (issue 11,
                # point 8), so `rp-bts process` on it elsewhere takes them; a hard link where
                # it can
                self._directory.mkdir(parents=True, exist_ok=True)
                safe = _UNSAFE.sub("_", name)[-100:]
                path = self._directory / f"{uuid.uuid4().hex[:12]}-{safe}"
                try:
                    os.link(source, path)
                except OSError:
                    shutil.copyfile(source, path)
                size = path.stat().st_size
        except (OSError, TypeError, ValueError) as exc:
            what = name or str(path_or_bytes)[:200]
            self._state.problems.append(f"rp_bts.attach({what!r}) skipped: {exc}")
            return
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._state.attachments.append(Attachment(name, str(path), mime, size))
