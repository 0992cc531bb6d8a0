"""Inventory loading (YAML and INI), variable precedence, path resolution and --limit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.config import (
    Inventory,
    available_environments,
    load_inventory,
    parse_inventory_ini,
    parse_inventory_yaml,
    select_hosts,
)
from deployer.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root as the working directory, so messages name `inventories/<env>.yml`."""
    (tmp_path / "inventories").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, name: str, text: str) -> Path:
    path = project / "inventories" / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(project: Path, name: str, text: str) -> Inventory:
    path = write(project, name, text)
    return load_inventory(project / "inventories", path.name.split(".")[0])


def error_of(project: Path, name: str, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(project, name, text)
    return info.value


SAMPLE_YAML = """
all:
  vars:
    app_port: 8000
    ansible_user: deploy
  hosts:
    lb1:
  children:
    web:
      vars: {tier: web}
      hosts:
        web1: {ansible_host: 127.0.0.51, ansible_port: 2222}
        web2:
      children:
        canary:
          hosts:
            web2: {tier: canary-host}
    worker:
      hosts:
        work1: {host: 127.0.0.59, port: 2200, user: root}
    migrate:
      hosts:
        work1:
"""

SAMPLE_INI = """
lb1

[all:vars]
app_port=8000
ansible_user=deploy

[web]
web1 ansible_host=127.0.0.51 ansible_port=2222
web2

[web:vars]
tier=web

[web:children]
canary

[canary]
web2 tier=canary-host

[worker]
work1 host=127.0.0.59 port=2200 user=root

[migrate]
work1
"""


# ---------------------------------------------------------------- shape


def test_yaml_inventory_hosts_groups_and_defaults(project: Path) -> None:
    inventory = load(project, "staging.yml", SAMPLE_YAML)

    assert inventory.env == "staging"
    assert inventory.path == "inventories/staging.yml"
    assert [h.name for h in inventory.hosts] == ["lb1", "web1", "web2", "work1"]
    assert dict(inventory.groups) == {
        "all": ("lb1", "web1", "web2", "work1"),
        "web": ("web1", "web2"),
        "canary": ("web2",),
        "worker": ("work1",),
        "migrate": ("work1",),
    }
    lb1, web1, web2, work1 = inventory.hosts
    assert (lb1.address, lb1.port, lb1.user) == ("lb1", None, "deploy")  # port: ssh config or 22
    assert (web1.address, web1.port) == ("127.0.0.51", 2222)
    assert web2.groups == ("all", "web", "canary")
    assert work1.groups == ("all", "worker", "migrate")
    assert (work1.address, work1.port, work1.user) == ("127.0.0.59", 2200, "root")
    assert work1.vars["ansible_host"] == "127.0.0.59"
    assert web1.where is not None and str(web1.where) == (
        "inventories/staging.yml:11: all.children.web.hosts.web1"
    )


def test_ini_inventory_equals_the_yaml_one(project: Path) -> None:
    from_yaml = load(project, "staging.yml", SAMPLE_YAML)
    from_ini = load(project, "production.ini", SAMPLE_INI)

    assert dict(from_ini.groups) == dict(from_yaml.groups)
    for ini_host, yaml_host in zip(from_ini.hosts, from_yaml.hosts, strict=True):
        assert ini_host.name == yaml_host.name
        assert (ini_host.address, ini_host.port, ini_host.user) == (
            yaml_host.address,
            yaml_host.port,
            yaml_host.user,
        )
        assert ini_host.groups == yaml_host.groups
        assert dict(ini_host.vars) == dict(yaml_host.vars)


def test_ini_file_without_extension_and_quoted_values(project: Path) -> None:
    inventory = load(
        project,
        "qa",
        """
        # comment
        [web]
        web1 ansible_port=2201 motd="hello world" code='007'  # trailing comment
        [web:vars]
        greeting = "hi there"
        retries=3
        """,
    )
    web1 = inventory.hosts[0]
    assert web1.port == 2201
    assert web1.vars["motd"] == "hello world"
    assert web1.vars["greeting"] == "hi there"
    assert web1.vars["retries"] == 3
    # shlex removes the quotes on host lines, then Python literal syntax types the value, as
    # Ansible does: 007 is no Python literal, so it stays text.
    assert web1.vars["code"] == "007"


def test_other_top_level_groups_are_children_of_all(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        web:
          hosts:
            web1:
        db:
          hosts:
            db1:
        """,
    )
    assert dict(inventory.groups) == {"all": ("web1", "db1"), "web": ("web1",), "db": ("db1",)}
    assert inventory.hosts[1].groups == ("all", "db")


def test_host_in_several_groups_is_one_host(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          children:
            web:
              hosts:
                app1: {ansible_port: 2201}
            worker:
              hosts:
                app1: {queue: default}
        """,
    )
    (app1,) = inventory.hosts
    assert app1.groups == ("all", "web", "worker")
    assert app1.port == 2201
    assert app1.vars["queue"] == "default"


# ---------------------------------------------------------------- precedence


def test_variable_precedence_all_group_child_group_host(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          vars: {a: all, b: all, c: all, d: all}
          children:
            web:
              vars: {b: web, c: web, d: web}
              children:
                canary:
                  vars: {c: canary, d: canary}
                  hosts:
                    web1: {d: host}
        """,
    )
    assert {k: inventory.hosts[0].vars[k] for k in "abcd"} == {
        "a": "all",
        "b": "web",
        "c": "canary",
        "d": "host",
    }


def test_child_group_wins_even_when_declared_before_its_parent(project: Path) -> None:
    inventory = load(
        project,
        "staging.ini",
        """
        [canary]
        web1
        [canary:vars]
        tier=canary
        [web:children]
        canary
        [web:vars]
        tier=web
        """,
    )
    assert inventory.hosts[0].vars["tier"] == "canary"
    assert inventory.hosts[0].groups == ("all", "canary", "web")


def test_sibling_groups_at_same_depth_merge_alphabetically(project: Path) -> None:
    # Ansible's rule: same depth -> ansible_group_priority, then group name. File order
    # does not matter, so the same inventory gives the same values in Ansible and here.
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          children:
            zeta:
              vars: {color: zeta}
              hosts: {web1: }
            alpha:
              vars: {color: alpha}
              hosts: {web1: }
            beta:
              vars: {color: beta, ansible_group_priority: 0}
              hosts: {web1: }
        """,
    )
    assert inventory.hosts[0].vars["color"] == "zeta"
    assert inventory.hosts[0].groups == ("all", "zeta", "alpha", "beta")


def test_group_priority_breaks_ties(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          children:
            alpha:
              vars: {color: alpha, ansible_group_priority: 10}
              hosts: {web1: }
            zeta:
              vars: {color: zeta}
              hosts: {web1: }
        """,
    )
    assert inventory.hosts[0].vars["color"] == "alpha"


def test_plain_port_in_group_vars_is_not_the_ssh_port(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          vars: {port: 8000, user: app}
          hosts:
            web1:
        """,
    )
    web1 = inventory.hosts[0]
    assert (web1.port, web1.user) == (None, None)
    assert web1.vars["port"] == 8000


def test_key_paths_resolve_against_the_project_root(project: Path) -> None:
    inventory = load(
        project,
        "staging.yml",
        """
        all:
          vars:
            ssh_key_file: keys/deploy_ed25519
            ssh_known_hosts_file: ~/known_hosts
          hosts:
            web1:
            web2: {ansible_ssh_private_key_file: /etc/keys/web2}
        """,
    )
    web1, web2 = inventory.hosts
    assert web1.key_file == str(project / "keys" / "deploy_ed25519")
    assert web1.known_hosts_file == str(Path("~/known_hosts").expanduser())
    assert web2.key_file == "/etc/keys/web2"


# ---------------------------------------------------------------- errors


def test_yaml_syntax_error_names_file_and_line(project: Path) -> None:
    error = error_of(
        project,
        "staging.yml",
        """
        all:
          hosts:
            web1: {ansible_port: 22
            web2:
        """,
    )
    assert error.file == "inventories/staging.yml"
    assert error.line == 4
    assert str(error).startswith("inventories/staging.yml:4: invalid YAML: ")


def test_unknown_group_key_names_its_key_path(project: Path) -> None:
    error = error_of(
        project,
        "staging.yml",
        """
        all:
          children:
            web:
              hostz:
                web1:
        """,
    )
    assert error.message == (
        "inventories/staging.yml:4: all.children.web.hostz: unknown key "
        "(allowed: hosts, vars, children)"
    )
    assert error.hint == "did you mean 'hosts'?"


def test_wrong_port_type_names_its_key_path(project: Path) -> None:
    error = error_of(
        project,
        "staging.yml",
        """
        all:
          children:
            web:
              hosts:
                web1:
                  ansible_port: abc
        """,
    )
    assert error.message == (
        "inventories/staging.yml:6: all.children.web.hosts.web1.ansible_port: "
        "expected an integer, got 'abc'"
    )


def test_ini_errors_name_file_and_line(project: Path) -> None:
    error = error_of(project, "staging.ini", "[web]\nweb1\nweb2 ansible_port=abc\n")
    assert error.message == (
        "inventories/staging.ini:3: web2.ansible_port: expected an integer, got 'abc'"
    )
    error = error_of(project, "staging.ini", "[web]\nweb1 novalue\n")
    assert error.message == "inventories/staging.ini:2: web1: expected key=value, got 'novalue'"
    error = error_of(project, "staging.ini", "[web]\n[web:hostz]\n")
    assert error.message == "inventories/staging.ini:2: [web:hostz]: unknown section kind ':hostz'"


def test_top_level_hosts_without_all_is_explained(project: Path) -> None:
    error = error_of(project, "staging.yml", "hosts:\n  web1:\n")
    assert (
        error.message == "inventories/staging.yml:1: hosts: must sit under a group at the top level"
    )


def test_hosts_as_a_list_is_refused(project: Path) -> None:
    error = error_of(project, "staging.yml", "all:\n  hosts:\n    - web1\n")
    assert error.message == "inventories/staging.yml:2: all.hosts: expected a mapping, got a list"


def test_duplicate_key_is_refused(project: Path) -> None:
    error = error_of(project, "staging.yml", "all:\n  hosts:\n    web1:\n    web1:\n")
    assert error.message == (
        "inventories/staging.yml:4: all.hosts.web1: duplicate key (first defined on line 3)"
    )


def test_host_ranges_expand_in_ini_and_yaml(project: Path) -> None:
    ini = load(project, "staging.ini", "[web]\nweb[01:03].example.com:2201 tier=web\n")
    assert [h.name for h in ini.hosts] == [f"web0{n}.example.com" for n in (1, 2, 3)]
    assert {h.port for h in ini.hosts} == {2201}
    (project / "inventories" / "staging.ini").unlink()
    yaml = load(project, "staging.yml", "all:\n  hosts:\n    db-[a:c]:\n    n[1:9:4]:\n")
    assert [h.name for h in yaml.hosts] == ["db-a", "db-b", "db-c", "n1", "n5", "n9"]


def test_bad_host_range_names_file_and_line(project: Path) -> None:
    error = error_of(project, "staging.ini", "[web]\nweb[01:3]\n")
    assert error.message == (
        "inventories/staging.ini:2: web[01:3]: host range [01:3]: begin and end must have the"
        " same width"
    )


def test_group_cycle_is_refused(project: Path) -> None:
    error = error_of(project, "staging.ini", "[a:children]\nb\n[b:children]\na\n[a]\nh1\n")
    assert "group cycle" in error.message


def test_inventory_without_hosts_is_an_error(project: Path) -> None:
    error = error_of(project, "staging.yml", "all:\n  vars: {a: 1}\n")
    assert error.message == "inventories/staging.yml: no hosts defined"


def test_unknown_environment_lists_the_available_ones(project: Path) -> None:
    write(project, "staging.yml", SAMPLE_YAML)
    write(project, "production.ini", SAMPLE_INI)
    write(project, "README.md", "not an inventory")
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "prod")
    assert info.value.message == (
        "inventories: no inventory for environment 'prod' (available: production, staging)"
    )
    assert info.value.hint == "run with --env one of: production, staging"
    assert available_environments(project / "inventories") == ("production", "staging")


def test_two_files_for_one_environment_is_an_error(project: Path) -> None:
    write(project, "staging.yml", SAMPLE_YAML)
    write(project, "staging.ini", SAMPLE_INI)
    with pytest.raises(ConfigError, match="several inventory files: staging.yml, staging.ini"):
        load_inventory(project / "inventories", "staging")


def test_parse_helpers_work_on_text() -> None:
    inventory = parse_inventory_yaml("all:\n  hosts:\n    web1:\n", "inv.yml", "dev")
    assert inventory.hosts[0].name == "web1"
    inventory = parse_inventory_ini("web1\n", "inv.ini", "dev")
    assert inventory.hosts[0].groups == ("all",)


# ---------------------------------------------------------------- --limit


@pytest.fixture
def inventory(project: Path) -> Inventory:
    return load(project, "staging.yml", SAMPLE_YAML)


def names(inventory: Inventory, limit: str | None) -> list[str]:
    return [host.name for host in select_hosts(inventory, limit)]


def test_limit_none_and_all_select_everything(inventory: Inventory) -> None:
    assert names(inventory, None) == ["lb1", "web1", "web2", "work1"]
    assert names(inventory, "all") == ["lb1", "web1", "web2", "work1"]


def test_limit_by_name_group_and_glob(inventory: Inventory) -> None:
    assert names(inventory, "web2") == ["web2"]
    assert names(inventory, "web") == ["web1", "web2"]
    assert names(inventory, "w*") == ["web1", "web2", "work1"]  # hosts and groups
    assert names(inventory, "work1,lb1") == ["lb1", "work1"]  # inventory order
    assert names(inventory, "canary:worker") == ["web2", "work1"]


def test_limit_exclusion_and_intersection(inventory: Inventory) -> None:
    assert names(inventory, "web:!canary") == ["web1"]
    assert names(inventory, "!web") == ["lb1", "work1"]
    assert names(inventory, "all:&web") == ["web1", "web2"]
    assert names(inventory, "w*,&web,!web1") == ["web2"]


def test_limit_selecting_nothing_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(ConfigError) as info:
        select_hosts(inventory, "web:&worker")
    assert info.value.message == (
        "inventories/staging.yml: --limit 'web:&worker' selects no hosts "
        "(groups: all, web, canary, worker, migrate)"
    )
    assert info.value.hint is not None and info.value.hint.startswith("check --limit")


def test_limit_pattern_matching_nothing_is_an_error(inventory: Inventory) -> None:
    # A typo must not silently deploy to fewer hosts than meant.
    with pytest.raises(ConfigError, match="--limit pattern 'web3' matches no host or group"):
        select_hosts(inventory, "web1,web3")
