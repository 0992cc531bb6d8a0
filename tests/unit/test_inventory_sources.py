"""Inventory sources: Terraform state, `terraform output -json`, executable inventory scripts,
and the `<env>.vars.yml` companion. All addresses are loopback (127.0.0.0/8)."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from deployer.config import Inventory, available_environments, load_inventory, select_hosts, sources
from deployer.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root as the working directory, so messages name `inventories/<file>`."""
    (tmp_path / "inventories").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, name: str, text: str, *, executable: bool = False) -> Path:
    path = project / "inventories" / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    if executable:
        path.chmod(0o755)
    return path


def fixture(project: Path, fixture_name: str, name: str) -> Path:
    return Path(shutil.copy(FIXTURES / fixture_name, project / "inventories" / name))


def write_state(project: Path, resources: list[dict[str, Any]], version: int = 4) -> None:
    state = {"version": version, "terraform_version": "1.7.5", "resources": resources}
    write(project, "staging.tfstate", json.dumps(state, indent=2))


def aws(name: str, attributes: dict[str, Any], index: Any = None) -> dict[str, Any]:
    instance: dict[str, Any] = {"schema_version": 1, "attributes": attributes}
    if index is not None:
        instance["index_key"] = index
    return {"mode": "managed", "type": "aws_instance", "name": name, "instances": [instance]}


def error_of(project: Path, env: str = "staging") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", env)
    return info.value


def shape(inventory: Inventory) -> tuple[list[tuple[Any, ...]], dict[str, tuple[str, ...]]]:
    """Everything a host and a group are, except where they were declared."""
    hosts = [(h.name, h.address, h.port, h.user, h.groups, dict(h.vars)) for h in inventory.hosts]
    return hosts, dict(inventory.groups)


# ---------------------------------------------------------------- Terraform state


def test_state_hosts_come_from_machines_with_roles_as_groups(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    inventory = load_inventory(project / "inventories", "staging")

    # Not hosts: the data source, the deposed web2, the elastic IP, the production instance.
    assert [(h.name, h.address, h.groups) for h in inventory.hosts] == [
        ("web1", "127.0.0.11", ("all", "web")),
        ("web2", "127.0.0.12", ("all", "web", "migrate")),
        ("worker-a", "127.0.0.21", ("all", "worker")),
        ("worker-b", "127.0.0.22", ("all", "worker")),
        ("cache-1", "127.0.0.31", ("all", "cache")),  # generic fallback, DigitalOcean-style tags
    ]
    assert inventory.path == "inventories/staging.tfstate"
    assert inventory.groups["worker"] == ("worker-a", "worker-b")
    assert inventory.groups["migrate"] == ("web2",)
    web1, _, worker_a, *_ = inventory.hosts
    assert web1.vars["terraform_resource"] == "aws_instance.web[0]"
    assert web1.vars["terraform_tags"] == {"Name": "web1", "Role": "web", "Environment": "staging"}
    assert worker_a.vars["terraform_resource"] == 'module.workers.hcloud_server.worker["a"]'
    assert worker_a.where is not None
    assert str(worker_a.where) == "inventories/staging.tfstate: resources[4].instances[0]"


def test_state_environment_tag_filters_instances(project: Path) -> None:
    fixture(project, "fleet.tfstate", "production.tfstate")
    inventory = load_inventory(project / "inventories", "production")
    assert [(h.name, h.address, h.groups) for h in inventory.hosts] == [
        ("web-prod1", "127.0.0.41", ("all", "web"))
    ]


def test_state_without_environment_tags_keeps_every_machine(project: Path) -> None:
    write_state(
        project,
        [
            aws("app", {"public_ip": "127.0.0.11", "tags": {"Name": "app1"}}, index=0),
            aws("db", {"private_ip": "127.0.0.12", "tags": None}),
        ],
    )
    inventory = load_inventory(project / "inventories", "staging")
    # No Name tag and no name attribute: the resource address, with brackets made dots.
    assert [(h.name, h.address) for h in inventory.hosts] == [
        ("app1", "127.0.0.11"),
        ("aws_instance.db", "127.0.0.12"),
    ]


def test_state_companion_vars_give_connection_settings(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    write(
        project,
        "staging.vars.yml",
        """
        ansible_user: deploy
        ansible_port: 2222
        ssh_key_file: keys/deploy
        ssh_known_hosts_file: ~/known_hosts
        app_port: 8000
        """,
    )
    web1 = load_inventory(project / "inventories", "staging").hosts[0]
    assert (web1.user, web1.port, web1.vars["app_port"]) == ("deploy", 2222, 8000)
    assert web1.key_file == str(project / "keys" / "deploy")
    assert web1.known_hosts_file == str(Path("~/known_hosts").expanduser())


def test_state_address_attributes_are_configurable(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    write(project, "staging.vars.yml", "terraform_address_attributes: [private_ip, ipv4_address]\n")
    inventory = load_inventory(project / "inventories", "staging")
    assert [(h.name, h.address) for h in inventory.hosts] == [
        ("web1", "127.0.0.111"),
        ("web2", "127.0.0.112"),
        ("worker-a", "127.0.0.21"),
        ("worker-b", "127.0.0.22"),
        # cache-1 (a generic resource) holds neither attribute, so it is no machine here.
    ]
    assert "terraform_address_attributes" not in inventory.hosts[0].vars


def test_state_limit_selects_like_a_yaml_inventory(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    inventory = load_inventory(project / "inventories", "staging")
    names = [h.name for h in select_hosts(inventory, "web:worker:!migrate")]
    assert names == ["web1", "worker-a", "worker-b"]
    assert [h.name for h in select_hosts(inventory, "worker-*")] == ["worker-a", "worker-b"]
    with pytest.raises(ConfigError, match="--limit pattern 'db' matches no host or group"):
        select_hosts(inventory, "db")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            {"version": 3, "resources": []},
            "inventories/staging.tfstate: version: unsupported Terraform state version 3"
            " (expected 4)",
        ),
        ({"resources": []}, "inventories/staging.tfstate: not a Terraform state file: no version"),
        (
            {"version": 4, "resources": [{"mode": "managed", "type": "aws_instance"}]},
            "inventories/staging.tfstate: resources[0]: missing required key 'name'",
        ),
        (
            {"version": 4, "resources": "none"},
            "inventories/staging.tfstate: resources: expected a list, got 'none'",
        ),
    ],
)
def test_state_shape_errors_name_the_json_path(
    project: Path, state: dict[str, Any], message: str
) -> None:
    write(project, "staging.tfstate", json.dumps(state))
    assert error_of(project).message == message


def test_state_that_is_not_json_names_the_line(project: Path) -> None:
    write(project, "staging.tfstate", '{\n  "version": 4,\n  "resources": [,]\n}\n')
    error = error_of(project)
    assert error.message.startswith("inventories/staging.tfstate:3: invalid JSON: ")


def test_state_machine_without_address_is_an_error(project: Path) -> None:
    write_state(project, [aws("web", {"public_ip": "", "private_ip": None}, index=0)])
    error = error_of(project)
    assert error.message == (
        "inventories/staging.tfstate: resources[0].instances[0].attributes:"
        " aws_instance.web[0] has none of the address attributes public_ip, private_ip"
    )
    assert error.hint is not None and "terraform_address_attributes" in error.hint


def test_state_duplicate_host_names_are_an_error(project: Path) -> None:
    write_state(
        project,
        [
            aws("web", {"public_ip": "127.0.0.11", "tags": {"Name": "web"}}),
            aws("api", {"public_ip": "127.0.0.12", "tags": {"Name": "web"}}),
        ],
    )
    assert error_of(project).message == (
        "inventories/staging.tfstate: resources[1].instances[0].attributes.tags.Name:"
        " host name 'web' is also that of aws_instance.web"
    )


def test_state_invalid_role_names_its_tag(project: Path) -> None:
    write_state(project, [aws("web", {"public_ip": "127.0.0.11", "tags": {"Role": "web servers"}})])
    assert error_of(project).message == (
        "inventories/staging.tfstate: resources[0].instances[0].attributes.tags.Role:"
        " invalid group name 'web servers'"
    )


def test_state_with_no_instance_of_the_environment_lists_the_tagged_ones(project: Path) -> None:
    fixture(project, "fleet.tfstate", "qa.tfstate")
    error = error_of(project, "qa")
    assert error.message == (
        "inventories/qa.tfstate: no instance is tagged Environment=qa (tagged: production, staging)"
    )


def test_state_without_machines_is_an_error(project: Path) -> None:
    eip = {"mode": "managed", "type": "aws_eip", "name": "lb", "instances": []}
    write_state(project, [eip])
    assert "no machine among the resources" in error_of(project).message


# ---------------------------------------------------------------- terraform output -json

EQUIVALENT_YAML = """
all:
  vars: {app_port: 8000, ansible_user: deploy}
  children:
    web:
      vars: {tier: web}
      hosts:
        web1: {ansible_host: 127.0.0.11}
        web2: {ansible_host: 127.0.0.12, ansible_port: 2222}
      children:
        canary:
          vars: {tier: canary}
          hosts: {web2: }
    migrate:
      hosts: {web1: }
"""

LIMITS = (None, "web", "canary", "web:!canary", "migrate:&web", "w*")


def assert_same_as_yaml(project: Path, env: str) -> None:
    write(project, "yaml.yml", EQUIVALENT_YAML)
    expected = load_inventory(project / "inventories", "yaml")
    inventory = load_inventory(project / "inventories", env)
    assert shape(inventory) == shape(expected)
    for limit in LIMITS:
        assert select_hosts(inventory, limit) != ()
        assert [h.name for h in select_hosts(inventory, limit)] == [
            h.name for h in select_hosts(expected, limit)
        ]


def test_output_in_ansible_shape_builds_the_same_inventory_as_yaml(project: Path) -> None:
    fixture(project, "fleet.tfoutput.json", "staging.tfoutput.json")
    assert_same_as_yaml(project, "staging")
    web2 = load_inventory(project / "inventories", "staging").hosts[1]
    assert (web2.port, web2.vars["tier"]) == (2222, "canary")  # the child group wins


def test_output_as_a_list_of_hosts(project: Path) -> None:
    hosts = [
        {"name": "web1", "address": "127.0.0.11", "groups": ["web", "migrate"]},
        {"name": "web2", "address": "127.0.0.12", "groups": ["web"], "vars": {"tier": "b"}},
        {"name": "lb1"},
    ]
    output = {"inventory": {"sensitive": False, "type": "tuple", "value": hosts}}
    write(project, "staging.tfoutput.json", json.dumps(output))
    write(project, "staging.vars.yml", "ansible_user: deploy\n")
    inventory = load_inventory(project / "inventories", "staging")
    assert [(h.name, h.address, h.user, h.groups) for h in inventory.hosts] == [
        ("web1", "127.0.0.11", "deploy", ("all", "web", "migrate")),
        ("web2", "127.0.0.12", "deploy", ("all", "web")),
        ("lb1", "lb1", "deploy", ("all",)),
    ]
    assert inventory.hosts[1].vars["tier"] == "b"


def test_output_name_comes_from_the_companion(project: Path) -> None:
    value = [{"name": "web1", "address": "127.0.0.11"}]
    write(project, "staging.tfoutput.json", json.dumps({"hosts": {"value": value}}))
    write(project, "staging.vars.yml", "terraform_output: hosts\n")
    assert load_inventory(project / "inventories", "staging").hosts[0].address == "127.0.0.11"


def test_missing_output_lists_the_outputs(project: Path) -> None:
    fixture(project, "fleet.tfoutput.json", "staging.tfoutput.json")
    write(project, "staging.vars.yml", "terraform_output: servers\n")
    error = error_of(project)
    assert error.message == (
        "inventories/staging.tfoutput.json: no output named 'servers' (outputs: inventory, vpc_id)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"web": {"hosts": [3]}}, "inventory.value.web.hosts[0]: expected a string, got 3"),
        ({"web": {"host": []}}, "inventory.value.web.host: unknown key"),
        (
            {"web": {"hosts": ["a b"]}},
            "inventory.value.web.hosts[0]: invalid host name 'a b'",
        ),
        (
            {"web": ["web1"], "_meta": {"hostvars": {"web1": {"ansible_port": "ssh"}}}},
            "inventory.value._meta.hostvars.web1.ansible_port: expected an integer, got 'ssh'",
        ),
        ([{"address": "127.0.0.11"}], "inventory.value[0]: missing required key 'name'"),
        ([{"name": "a", "adress": "x"}], "inventory.value[0].adress: unknown key"),
        ({"web": {"hosts": []}}, "inventory.value: lists no hosts"),
        ("web1", "inventory.value: expected a mapping, got 'web1'"),
    ],
)
def test_output_errors_name_the_json_path(project: Path, value: Any, message: str) -> None:
    write(project, "staging.tfoutput.json", json.dumps({"inventory": {"value": value}}))
    assert error_of(project).message.startswith(f"inventories/staging.tfoutput.json: {message}")


# ---------------------------------------------------------------- inventory scripts

SCRIPT = """
#!/usr/bin/env python3
import json, sys
INVENTORY, HOSTVARS = {inventory!r}, {hostvars!r}
if sys.argv[1:] == ["--list"]:
    print(json.dumps(INVENTORY))
elif sys.argv[1:2] == ["--host"]:
    print(json.dumps(HOSTVARS[sys.argv[2]]))
else:
    sys.exit("usage: --list | --host NAME")
"""


def ansible_json() -> dict[str, Any]:
    output = json.loads((FIXTURES / "fleet.tfoutput.json").read_text())
    value: dict[str, Any] = output["inventory"]["value"]
    return value


def write_script(project: Path, name: str, body: str) -> Path:
    return write(project, name, body, executable=True)


@pytest.mark.parametrize("name", ["staging.py", "staging.sh", "staging"])
def test_script_builds_the_same_inventory_as_yaml(project: Path, name: str) -> None:
    write_script(project, name, SCRIPT.format(inventory=ansible_json(), hostvars={}))
    assert_same_as_yaml(project, "staging")
    assert load_inventory(project / "inventories", "staging").path == f"inventories/{name}"


def test_script_without_meta_is_asked_for_each_host(project: Path) -> None:
    inventory = ansible_json()
    hostvars = inventory.pop("_meta")["hostvars"]  # only reachable with --host
    write_script(project, "staging.py", SCRIPT.format(inventory=inventory, hostvars=hostvars))
    hosts = load_inventory(project / "inventories", "staging").hosts
    assert [(h.name, h.address, h.port) for h in hosts] == [
        ("web1", "127.0.0.11", None),
        ("web2", "127.0.0.12", 2222),
    ]


def test_script_runs_in_the_project_root_with_companion_vars(project: Path) -> None:
    write_script(
        project,
        "staging.py",
        """
        #!/usr/bin/env python3
        import json, os
        print(json.dumps({"all": {"hosts": ["web1"], "vars": {"cwd": os.getcwd()}}}))
        """,
    )
    write(project, "staging.vars.yml", "ansible_user: deploy\nansible_host: 127.0.0.11\n")
    (web1,) = load_inventory(project / "inventories", "staging").hosts
    assert (web1.vars["cwd"], web1.user, web1.address) == (str(project), "deploy", "127.0.0.11")


def test_failing_script_shows_its_exit_code_and_stderr_tail(project: Path) -> None:
    write_script(
        project,
        "staging.py",
        """
        #!/usr/bin/env python3
        import sys
        for n in range(20):
            print(f"noise {n}", file=sys.stderr)
        sys.exit("cloud API: 403 Forbidden")
        """,
    )
    message = error_of(project).message
    assert message.startswith("inventories/staging.py --list: exited with code 1\n")
    assert message.endswith("    noise 19\n    cloud API: 403 Forbidden")
    assert "noise 10" not in message


def test_script_printing_no_json_is_an_error(project: Path) -> None:
    write_script(project, "staging.sh", "#!/bin/sh\necho 'web1 web2'\necho 'oops' >&2\n")
    message = error_of(project).message
    assert message.startswith("inventories/staging.sh --list:1: invalid JSON: Expecting value")
    assert message.endswith("\n    oops")


def test_script_errors_name_the_json_path(project: Path) -> None:
    write_script(project, "staging.sh", '#!/bin/sh\necho \'{"web": {"hosts": "web1"}}\'\n')
    assert error_of(project).message == (
        "inventories/staging.sh --list: web.hosts: expected a list, got 'web1'"
    )


def test_slow_script_is_killed_at_the_timeout(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "SCRIPT_TIMEOUT", 0.5)
    # The child keeps the output pipe open: only killing the process group ends it.
    write_script(project, "staging.sh", "#!/bin/sh\necho started >&2\nsleep 30 &\nsleep 30\n")
    started = time.monotonic()
    message = error_of(project).message
    assert time.monotonic() - started < 5
    assert message == "inventories/staging.sh --list: did not finish within 0.5s\n    started"


def test_script_that_is_not_executable_is_an_error(project: Path) -> None:
    write(project, "staging.py", "print('{}')\n")
    error = error_of(project)
    assert error.message == "inventories/staging.py: inventory script is not executable"
    assert error.hint == "chmod +x inventories/staging.py"


def test_executable_without_interpreter_line_is_explained(project: Path) -> None:
    write_script(project, "staging", "[web]\nweb1\n")
    error = error_of(project)
    assert error.message.startswith("inventories/staging --list: cannot run: ")
    assert error.hint is not None and "chmod -x" in error.hint


def test_extensionless_file_that_is_not_executable_stays_ini(project: Path) -> None:
    write(project, "staging", "[web]\nweb1 ansible_host=127.0.0.11\n")
    assert load_inventory(project / "inventories", "staging").hosts[0].groups == ("all", "web")


# ---------------------------------------------------------------- the companion and discovery


def test_companion_errors_carry_lines(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    write(project, "staging.vars.yml", "ansible_user: deploy\nansible_port: ssh\n")
    assert error_of(project).message == (
        "inventories/staging.vars.yml:2: ansible_port: expected an integer, got 'ssh'"
    )


@pytest.mark.parametrize(
    ("source", "companion", "message"),
    [
        (
            "staging.tfstate",
            "a: 1\nterraform_output: hosts\n",
            "inventories/staging.vars.yml:2: terraform_output: only used with"
            " staging.tfoutput.json",
        ),
        (
            "staging.tfstate",
            "terraform_adress_attributes: [x]\n",
            "inventories/staging.vars.yml:1: terraform_adress_attributes: unknown setting",
        ),
        (
            "staging.tfstate",
            "terraform_address_attributes: []\n",
            "inventories/staging.vars.yml:1: terraform_address_attributes: must list at least",
        ),
        (
            "staging.yml",
            "ansible_user: deploy\n",
            "inventories/staging.vars.yml: only read beside a Terraform or script inventory",
        ),
    ],
)
def test_companion_settings_are_checked(
    project: Path, source: str, companion: str, message: str
) -> None:
    if source.endswith(".yml"):
        write(project, source, EQUIVALENT_YAML)
    else:
        fixture(project, "fleet.tfstate", source)
    write(project, "staging.vars.yml", companion)
    assert error_of(project).message.startswith(message)


def test_sources_are_listed_as_environments(project: Path) -> None:
    fixture(project, "fleet.tfstate", "production.tfstate")
    fixture(project, "fleet.tfoutput.json", "staging.tfoutput.json")
    write(project, "staging.vars.yml", "ansible_user: deploy\n")
    write_script(project, "dynamic.py", "#!/bin/sh\n")
    write(project, "local.yml", EQUIVALENT_YAML)
    names = ("dynamic", "local", "production", "staging")
    assert available_environments(project / "inventories") == names


def test_two_sources_for_one_environment_is_an_error(project: Path) -> None:
    fixture(project, "fleet.tfstate", "staging.tfstate")
    write(project, "staging.yml", EQUIVALENT_YAML)
    with pytest.raises(ConfigError, match="several inventory files: staging.yml, staging.tfstate"):
        load_inventory(project / "inventories", "staging")
