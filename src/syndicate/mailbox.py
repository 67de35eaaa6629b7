"""A local SMTP mailbox for `syndicate run`: every message lands as an .eml file.

With no ``SYNDICATE_SMTP_URL`` configured, `syndicate run` starts this real SMTP
server (aiosmtpd) on loopback so the newsletter channel works end to end on a
laptop: editions and confirmation emails can be opened from ``var/mail/``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path


class MaildirHandler:
    """aiosmtpd handler: write each accepted message to ``directory`` (temp file + rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd hook name
        for rcpt in envelope.rcpt_tos:
            safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in rcpt)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{safe}.eml"
            tmp = self.directory / f".{name}.tmp"
            tmp.write_bytes(envelope.original_content or envelope.content)
            tmp.rename(self.directory / name)
        return "250 OK: saved"


def serve(directory: Path, host: str, port: int) -> None:
    """Run the mailbox until interrupted."""
    from aiosmtpd.controller import Controller

    controller = Controller(MaildirHandler(directory), hostname=host, port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
