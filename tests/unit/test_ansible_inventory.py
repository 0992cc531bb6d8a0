"""Inventories as teams keep them for Ansible: directories per environment, group_vars/ and
host_vars/, vault-encrypted values refused by name, and the `inventory --list` listing.
Parity of values with Ansible itself is in test_ansible_parity.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from invoke.context import Context

from deployer.config import Location, Template, available_environments, load_inventory, render
from deployer.config.ansible.listing import host_listing, inventory_listing
from deployer.config.ansible.ranges import expand_host_pattern
from deployer.errors import ConfigError

VAULTED = """\
$ANSIBLE_VAULT;1.1;AES256
62313365396662343061393464336163383764373764613633653634306231386433626436623361
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "inventories").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, name: str, text: str) -> Path:
    path = project / "inventories" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_directory_environment_with_group_vars_and_host_vars(project: Path) -> None:
    write(project, "production/hosts.ini", "[web]\nweb[1:2] ansible_host=127.0.0.1\n")
    write(project, "production/group_vars/all.yml", "app_port: 8000\n")
    write(project, "production/group_vars/web/main.yml", "greeting: hello\n")
    write(project, "production/host_vars/web2.yml", "greeting: hi from web2\n")
    write(project, "staging.yml", "all:\n  hosts:\n    s1:\n")
    assert available_environments(project / "inventories") == ("production", "staging")
    inventory = load_inventory(project / "inventories", "production")
    web1, web2 = inventory.hosts
    assert inventory.path == "inventories/production"
    assert dict(web1.vars) == {"ansible_host": "127.0.0.1", "app_port": 8000, "greeting": "hello"}
    assert web2.vars["greeting"] == "hi from web2"
    # The directory's group_vars/ belong to it only: the single-file staging sees none.
    assert "app_port" not in load_inventory(project / "inventories", "staging").hosts[0].vars


def test_group_vars_beside_a_single_file_inventory(project: Path) -> None:
    write(project, "staging.yml", "all:\n  children:\n    web:\n      hosts:\n        web1:\n")
    write(project, "group_vars/web.yml", "ansible_user: deploy\nssh_key_file: keys/id\n")
    host = load_inventory(project / "inventories", "staging").hosts[0]
    assert host.user == "deploy"
    assert host.key_file == str(project / "keys" / "id")  # paths still from the project root


def test_vault_encrypted_value_is_an_error_naming_file_and_key(project: Path) -> None:
    write(project, "staging.ini", "[web]\nweb1\n")
    write(
        project,
        "group_vars/web.yml",
        "user: deploy\ndb_password: !vault |\n  " + VAULTED.replace("\n", "\n  "),
    )
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "staging")
    assert info.value.message == (
        "inventories/group_vars/web.yml:2: db_password: value is encrypted with Ansible Vault"
        " (!vault)"
    )
    assert "secrets:" in (info.value.hint or "")


def test_vault_encrypted_value_in_a_yaml_inventory_is_an_error(project: Path) -> None:
    write(
        project,
        "staging.yml",
        "all:\n  vars:\n    token: !vault |\n      $ANSIBLE_VAULT;1\n  hosts:\n    web1:\n",
    )
    with pytest.raises(ConfigError, match=r"staging.yml:3: all.vars.token: value is encrypted"):
        load_inventory(project / "inventories", "staging")


def test_unsafe_value_is_never_rendered(project: Path) -> None:
    # As in Ansible: a variable holding a template renders when used, unless tagged !unsafe.
    write(project, "staging.ini", "web1\n")
    write(project, "group_vars/all.yml", "motd: !unsafe 'Hi {{ who }}'\nplain: 'Hi {{ who }}'\n")
    host = load_inventory(project / "inventories", "staging").hosts[0]
    assert host.vars["motd"] == "Hi {{ who }}"
    where = Location("templates/motd.j2", 1, "")
    rendered = render(Template("{{ motd }} / {{ plain }}", where), {**host.vars, "who": "you"})
    assert rendered == "Hi {{ who }} / Hi you"


@pytest.mark.parametrize("name", ["group_vars/all.yml", "host_vars/web1/secrets.yml"])
def test_vault_encrypted_file_is_an_error_naming_it(project: Path, name: str) -> None:
    write(project, "staging.ini", "web1\n")
    write(project, name, VAULTED)
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "staging")
    assert info.value.message == f"inventories/{name}: file is encrypted with Ansible Vault"


def test_vault_encrypted_inventory_file_is_an_error(project: Path) -> None:
    write(project, "prod/hosts.yml", VAULTED)
    with pytest.raises(ConfigError, match="prod/hosts.yml: file is encrypted with Ansible Vault"):
        load_inventory(project / "inventories", "prod")


def test_group_vars_file_must_be_a_mapping(project: Path) -> None:
    write(project, "staging.ini", "web1\n")
    write(project, "group_vars/all.yml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="group_vars/all.yml:1: expected a mapping, got a list"):
        load_inventory(project / "inventories", "staging")


def test_unreadable_file_in_an_inventory_directory_is_an_error(project: Path) -> None:
    # Ansible warns and skips a file no plugin can read; a deploy must not lose hosts quietly.
    write(project, "prod/hosts.ini", "web1\n")
    write(project, "prod/extra.yml", "all: [web2]\n")
    with pytest.raises(ConfigError, match="prod/extra.yml:1: all: expected a mapping"):
        load_inventory(project / "inventories", "prod")


def test_empty_inventory_directory_is_an_error(project: Path) -> None:
    write(project, "prod/group_vars/all.yml", "a: 1\n")
    write(project, "prod/notes.md", "ignored, as Ansible ignores it\n")
    with pytest.raises(ConfigError, match="prod: no inventory source in this directory"):
        load_inventory(project / "inventories", "prod")


def test_directory_and_file_for_one_environment_is_an_error(project: Path) -> None:
    write(project, "prod.yml", "all:\n  hosts:\n    a:\n")
    write(project, "prod/hosts", "b\n")
    with pytest.raises(ConfigError, match="several inventory files: prod.yml, prod/"):
        load_inventory(project / "inventories", "prod")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[web:vars]\na=1\n[db]\nh\n", "[web:vars] sets variables of a group declared nowhere"),
        ("[web:children]\ncanary\n[web]\nh\n", "[web:children] names group 'canary', declared"),
    ],
)
def test_ini_groups_named_but_never_declared_are_errors_as_in_ansible(
    project: Path, text: str, reason: str
) -> None:
    write(project, "staging.ini", text)
    with pytest.raises(ConfigError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        load_inventory(project / "inventories", "staging")


@pytest.mark.parametrize(
    ("pattern", "names", "port"),
    [
        (
            "web[01:03].example.com",
            ["web01.example.com", "web02.example.com", "web03.example.com"],
            None,
        ),
        ("db-[a:c]", ["db-a", "db-b", "db-c"], None),
        ("n[1:10:4]", ["n1", "n5", "n9"], None),
        ("n[:2]", ["n0", "n1", "n2"], None),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"], None),
        ("web[8:10]:2222", ["web8", "web9", "web10"], 2222),
        ("[fe80::1]:2222", ["fe80::1"], 2222),
        ("fe80::1", ["fe80::1"], None),
        ("127.0.0.[1:2]", ["127.0.0.1", "127.0.0.2"], None),
    ],
)
def test_host_patterns(pattern: str, names: list[str], port: int | None) -> None:
    assert expand_host_pattern(pattern) == (names, port)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("web[01:3]", "same width"),
        ("web[1]", "must be [begin:end]"),
        ("web[1:]", "has no end"),
        ("web[c:a]", "begin <= end"),
        ("web[9:1]", "begin <= end"),
        ("web[1:3:0]", "step of at least 1"),
        ("web[1:x]", "neither a number nor a single letter"),
        ("web:", "cannot end in ':'"),
    ],
)
def test_bad_host_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
        expand_host_pattern(pattern)


def test_listing_has_ansible_inventory_shape_with_secrets_masked(project: Path) -> None:
    write(
        project,
        "staging.ini",
        """
        lb1
        [web]
        web1 ansible_password=hunter2 api_token=abc ssh_key_file=keys/id
        [web:children]
        canary
        [canary]
        web1
        [empty]
        """,
    )
    inventory = load_inventory(project / "inventories", "staging")
    listing = inventory_listing(inventory)
    assert listing["all"] == {"children": ["ungrouped", "web", "empty"]}
    assert listing["ungrouped"] == {"hosts": ["lb1"]}
    assert listing["web"] == {"hosts": ["web1"], "children": ["canary"]}
    assert "empty" not in listing  # as Ansible: a group with no hosts and no children
    web1 = listing["_meta"]["hostvars"]["web1"]
    assert web1["ansible_password"] == web1["api_token"] == "***"
    assert web1["ssh_key_file"] == str(project / "keys" / "id")
    assert "lb1" not in listing["_meta"]["hostvars"]
    assert host_listing(inventory, "web1") == web1
    with pytest.raises(ConfigError, match="no host named 'nope'"):
        host_listing(inventory, "nope")


def test_inventory_task_prints_the_listing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployer.tasks import inventory

    write(project, "staging/hosts", "[web]\nweb[1:2]\n")
    write(project, "staging/group_vars/web.yml", "db_password: s3cret\ncolor: blue\n")
    inventory(Context(), env="staging", list=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed["web"] == {"hosts": ["web1", "web2"]}
    assert printed["_meta"]["hostvars"]["web2"] == {"color": "blue", "db_password": "***"}
    inventory(Context(), env="staging", host="web1")
    assert json.loads(capsys.readouterr().out) == {"color": "blue", "db_password": "***"}


@pytest.mark.parametrize("task", ["inventory", "drill"])
def test_dash_h_after_a_task_shows_its_help_not_an_option(
    task: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`shipfleet inventory -h` read `-h` as `--host` and failed wanting a value (`drill -h`
    as `--hold`): Invoke gave each option the first free letter of its name."""
    from deployer.cli import program

    program.run(["shipfleet", task, "-h"], exit=False)
    shown = capsys.readouterr().out
    assert shown.startswith(f"Usage: shipfleet [--core-opts] {task} [--options]")
    assert "-h," not in shown
    option = {"inventory": "-o STRING, --host=STRING", "drill": "-o, --hold"}[task]
    assert option in shown


def test_inventory_host_has_its_own_short_flag(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployer.cli import program

    write(project, "staging/hosts", "[web]\nweb1 color=blue\n")
    program.run(["shipfleet", "inventory", "-e", "staging", "-o", "web1"], exit=False)
    assert json.loads(capsys.readouterr().out) == {"color": "blue"}


def test_terraform_source_inside_an_inventory_directory_is_an_error(project: Path) -> None:
    write(project, "prod/hosts", "web1\n")
    write(project, "prod/main.tfstate", "{}\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "prod")
    assert info.value.message == (
        "inventories/prod/main.tfstate: Terraform sources are read as a whole environment,"
        " not inside a directory"
    )
