"""Issue 14, section 3, through the real CLI: the webhook URL never appears in output, not even
when a hook prints the environment it inherited, and a plain http:// URL is a warning in the
preflight checklist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import Project, make_project, webhook_receiver
from tests.integration.test_preflight import item_line


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    with webhook_receiver("/hooks/T000/B000/token-xyz") as got:
        yield got


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet, hosts=["web1", "web2"])
    p.playbook(notify={"webhook": {"url_env": "DEPLOY_WEBHOOK_URL"}})
    return p


def test_a_hook_printing_the_webhook_url_shows_it_masked(
    project: Project, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = receiver
    project.playbook(
        hooks={
            "after_stage": {"local": 'echo "hook sees $DEPLOY_WEBHOOK_URL"; exit 3'},
        }
    )
    out = project.invoke("deploy", "--env", "test", env={"DEPLOY_WEBHOOK_URL": url})
    assert out.returncode == 1, out.stdout + out.stderr
    shown = out.stdout + out.stderr
    assert "hook sees ***" in shown  # the hook ran and printed it...
    assert url not in shown and "token-xyz" not in shown  # ...masked
    assert [m["deployer"]["event"] for m in received][0] == "start"  # type: ignore[index]
    assert all(url not in json.dumps(m) for m in received)


def test_a_plain_http_webhook_url_is_a_preflight_warning(
    project: Project, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    url, _ = receiver
    out = project.invoke("preflight", "--env", "test", env={"DEPLOY_WEBHOOK_URL": url})
    assert out.returncode == 0, out.stdout + out.stderr
    notify = item_line(out.stdout, "notify")
    assert notify.startswith("  warn  notify") and "plain http:// URL" in notify
    assert url not in out.stdout + out.stderr
