"""The canary strategy on a real fleet: the analysis decides from numbers it measured on the
hosts, both ways. The bad releases are the sample app made slow (SLOW_MS) or failing a share
of its requests (ERROR_PERCENT) while its /health stays green, so only the analysis can
catch them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project

CANARY = {
    "kind": "canary",
    "canary": {
        "steps": [1, "50%"],
        "bake": 4,
        "analysis": {
            # The page that does the app's real work (a database write), not just /health.
            "url": "http://{{ app_listen }}:{{ app_port }}/",
            "interval": 0.1,
            "min_samples": 3,
            "max_error_rate_increase": 1,
            "max_p95_ratio": 1.5,
            # Well above what a loaded 2-core CI machine adds as noise; the slow release is 800.
            "latency_floor_ms": 250,
        },
    },
}


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    """A fleet on a first release, deployed the ordinary way; the next deploy is a canary."""
    p = make_project(tmp_path / "project", clean_fleet)
    first = p.invoke("deploy", "--env", "test")
    assert first.returncode == 0, first.stdout + first.stderr
    # A slow release's /health is slow too: give probes room, so only the analysis judges.
    p.playbook(strategy=CANARY, health={"timeout": 5})
    (p.app / "NOTE").write_text("the second release\n")
    return p


def run_record(project: Project) -> dict[str, object]:
    records = sorted(
        (project.root / ".deploy-runs").glob("*.json"), key=lambda p: p.stat().st_mtime
    )
    return json.loads(records[-1].read_text())


def test_a_good_canary_is_promoted_step_by_step(project: Project) -> None:
    old = project.current("web1")
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    new = project.current("web1")
    assert new != old
    assert [project.current(h) for h in HOSTS] == [new] * 4
    out = done.stdout
    assert "batch 1/3: web1" in out and "batch 2/3: web2" in out and "batch 3/3: web3 web4" in out
    assert "canary analysis, step 1/3 (4s bake):" in out
    assert "canary analysis, step 2/3 (4s bake):" in out
    assert "canary analysis, step 3/3" not in out  # the last step has no baseline to bake against
    assert out.count("-> promote: passed") == 2

    analyses = run_record(project)["canary"]
    assert isinstance(analyses, list) and len(analyses) == 2
    first, second = analyses
    assert first["canary"]["hosts"] == ["web1"]
    assert first["baseline"]["hosts"] == ["web2", "web3", "web4"]
    assert second["canary"]["hosts"] == ["web1", "web2"]
    assert second["baseline"]["hosts"] == ["web3", "web4"]
    for analysis in analyses:
        assert analysis["promote"] is True
        # Measured, not assumed: both groups were sampled and answered.
        assert analysis["canary"]["samples"] >= 3 and analysis["baseline"]["samples"] >= 3
        assert analysis["canary"]["error_rate"] == 0
        assert analysis["canary"]["p95_ms"] > 0 and analysis["baseline"]["p95_ms"] > 0


def test_a_slow_canary_is_rolled_back_on_its_p95(project: Project) -> None:
    old = project.current("web1")
    # /health still answers 200, slowly. 800 ms stands far above a loaded machine's noise.
    (project.app / "SLOW_MS").write_text("800\n")
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "-> roll back: failed: p95 latency" in done.stdout
    assert "canary step 1/3 failed: p95 latency; rolled back 1 host(s)" in done.stderr
    assert [project.current(h) for h in HOSTS] == [old] * 4
    for host in HOSTS:
        assert project.health(host)[1]["version"] == old
        assert not project.locked(host)
        assert project.leftovers(host) == []
    assert project.history("web1")[-1]["result"] == "rolled_back"

    (analysis,) = run_record(project)["canary"]
    assert analysis["promote"] is False
    assert analysis["canary"]["p95_ms"] >= 800  # what the canary really did
    assert analysis["baseline"]["p95_ms"] < 800
    p95 = next(rule for rule in analysis["rules"] if rule["name"] == "p95 latency")
    assert p95["ok"] is False


def test_a_canary_failing_requests_is_rolled_back_on_its_error_rate(project: Project) -> None:
    old = project.current("web1")
    (project.app / "ERROR_PERCENT").write_text("30\n")
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "-> roll back: failed: error rate vs baseline" in done.stdout
    assert [project.current(h) for h in HOSTS] == [old] * 4

    (analysis,) = run_record(project)["canary"]
    assert analysis["promote"] is False
    assert 20 <= analysis["canary"]["error_rate"] <= 40  # 30% of the page requests failed
    assert analysis["baseline"]["error_rate"] == 0
