"""Issue 14, section 3: the webhook URL (it carries the chat service's token) is masked in
all output from the moment the playbook is loaded, though it is not a Secret."""

from __future__ import annotations

import io

from deployer.events import Notice
from deployer.reporters import TerminalReporter
from deployer.reporters.webhook import WebhookReporter
from deployer.secrets import MASK, redact


def test_a_webhook_reporter_masks_its_url_everywhere() -> None:
    url = "https://127.0.0.1:9/services/T0/B0/unit-test-mask-token"  # never contacted
    reporter = WebhookReporter(url, retries=0)
    reporter.close(timeout=1)
    assert redact(f"hook said: {url}") == f"hook said: {MASK}"
    stream = io.StringIO()
    TerminalReporter(stream)(Notice(level="warning", text=f"env has DEPLOY_WEBHOOK_URL={url}"))
    assert url not in stream.getvalue() and MASK in stream.getvalue()
