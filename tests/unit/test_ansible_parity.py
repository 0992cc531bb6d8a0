"""Parity with Ansible itself: every inventory of the corpus in fixtures/ansible_inventories/
is read by `ansible-inventory --list` (ansible-core, a test-only dependency) and by the
deployer, and the hosts, each group's hosts and children, and every host's merged variables
must be the same. Differences the deployer makes on purpose are in docs/configuration.md
("Differences from Ansible") and tested elsewhere, never in this corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deployer.config import available_environments, load_inventory
from deployer.config.ansible.listing import inventory_listing, json_value

CORPUS = Path(__file__).parent / "fixtures" / "ansible_inventories"
CASES = sorted(path.name for path in CORPUS.iterdir() if path.is_dir())
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def source_of(case: Path) -> tuple[str, Path]:
    """The one environment of a case and its source (a file or a directory)."""
    (env,) = available_environments(case)
    (path,) = [p for p in case.iterdir() if p.name == env or p.name.startswith(f"{env}.")]
    return env, path


def ansible_list(path: Path, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        # A source Ansible cannot read fails the run instead of being skipped with a warning.
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1",
    }
    process = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    listing: dict[str, Any] = json.loads(process.stdout)
    listing["_meta"].pop("profile", None)  # ansible-core 2.19's output format marker
    return listing


@pytest.fixture(scope="module")
def ansible_listings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    # Not a skip: without Ansible there is no parity to prove.
    assert ANSIBLE_INVENTORY.exists(), "ansible-core is missing: pip install -e '.[test]'"
    home = tmp_path_factory.mktemp("ansible-home")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda case: ansible_list(source_of(CORPUS / case)[1], home), CASES)
        return dict(zip(CASES, results, strict=True))


def ours(case: str) -> dict[str, Any]:
    env, _ = source_of(CORPUS / case)
    listing = inventory_listing(load_inventory(CORPUS / case, env))
    # Compared unmasked: the listing's masking is for screens, the parity is about values.
    inventory = load_inventory(CORPUS / case, env)
    listing["_meta"]["hostvars"] = {h.name: dict(h.vars) for h in inventory.hosts if h.vars}
    # As the inventory task prints them (dates in ISO 8601, as Ansible prints them).
    result: dict[str, Any] = json.loads(json.dumps(listing, default=json_value))
    return result


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES)
def test_same_hosts_groups_and_variables_as_ansible(
    case: str, ansible_listings: dict[str, dict[str, Any]]
) -> None:
    expected, actual = ansible_listings[case], ours(case)
    assert sorted(actual["_meta"]["hostvars"]) == sorted(expected["_meta"]["hostvars"])
    for host, variables in expected["_meta"]["hostvars"].items():
        assert actual["_meta"]["hostvars"][host] == variables, host
    groups = sorted(set(expected) - {"_meta"})
    assert sorted(set(actual) - {"_meta"}) == groups
    for group in groups:
        assert actual[group].get("hosts", []) == expected[group].get("hosts", []), group
        assert set(actual[group].get("children", [])) == set(expected[group].get("children", [])), (
            group
        )
