"""Issue 14, section 1: data from hosts and clouds is never code. Values from Terraform and
inventory scripts are never expanded as templates, host names are strict, every template runs
in Jinja2's immutable sandbox, and `quote` shell-quotes a value. No Docker needed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from deployer.config import Host, Location, Playbook, Source, Template, load_inventory
from deployer.config.render import host_variables, quote, render, render_file
from deployer.config.untrusted import Unsafe, check_host_name, is_unsafe, mark_unsafe
from deployer.errors import ConfigError

WHERE = Location("playbooks/deploy.yml", 12, "restart")
# A payload that, rendered by an unsandboxed Jinja2, runs a shell command on the controller.
PAYLOAD = (
    "{{ self.__init__.__globals__.__builtins__.__import__('os')"
    ".system('touch /tmp/deployer-pwned') }}"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "inventories").mkdir()
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def playbook(**variables: object) -> Playbook:
    return Playbook(
        path="playbooks/deploy.yml",
        application="shop",
        deploy_to=Template("/srv/shop", WHERE),
        source=Source(path="."),
        vars=variables,
    )


def state(tags: dict[str, str]) -> str:
    instance = {"schema_version": 1, "attributes": {"private_ip": "127.0.0.9", "tags": tags}}
    resource = {"mode": "managed", "type": "aws_instance", "name": "web", "instances": [instance]}
    return json.dumps({"version": 4, "terraform_version": "1.7.5", "resources": [resource]})


# ---------------------------------------------------------------- quote


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("two words", "'two words'"),
        ("a; rm -rf /", "'a; rm -rf /'"),
        ("it's", "'it'\"'\"'s'"),
        (8000, "8000"),
        (None, "''"),
    ],
)
def test_quote_makes_one_shell_word(value: object, quoted: str) -> None:
    assert quote(value) == quoted
    rendered = render(Template("./bin/restart {{ v | quote }}", WHERE), {"v": value})
    assert rendered == f"./bin/restart {quoted}"


def test_quote_is_available_in_template_files(project: Path) -> None:
    (project / "templates" / "run.sh.j2").write_text("exec app --name {{ name | quote }}\n")
    out = render_file(project / "templates" / "run.sh.j2", {"name": "a b;c"})
    assert out == "exec app --name 'a b;c'\n"


# ---------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ range.__globals__ }}",
        "{{ items.append(1) }}",
        PAYLOAD,
    ],
)
def test_sandbox_refuses_python_internals_in_config_strings(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(Template(text, WHERE), {"items": []})
    message = str(info.value)
    assert message.startswith("playbooks/deploy.yml:12: restart: unsafe template: access to")
    assert "is unsafe" in message
    assert "sandbox" in (info.value.hint or "")
    assert not Path("/tmp/deployer-pwned").exists()


def test_sandbox_refuses_python_internals_in_template_files_at_their_line(
    project: Path,
) -> None:
    (project / "templates" / "app.ini.j2").write_text("[app]\nname = {{ ''.__class__ }}\n")
    with pytest.raises(ConfigError) as info:
        render_file(project / "templates" / "app.ini.j2", {})
    assert info.value.file == "templates/app.ini.j2"
    assert info.value.line == 2
    assert "access to attribute '__class__' of 'str' object is unsafe" in info.value.reason


# ---------------------------------------------------------------- unsafe values


def test_an_unsafe_value_is_output_literally_never_expanded() -> None:
    variables = {"a": "{{ 6 * 7 }}", "b": Unsafe("{{ 6 * 7 }}"), "c": mark_unsafe({"k": [PAYLOAD]})}
    assert render(Template("{{ a }}", WHERE), variables) == "42"  # the author's own: a template
    assert render(Template("{{ b }}", WHERE), variables) == "{{ 6 * 7 }}"
    assert render(Template("{{ c.k[0] }}", WHERE), variables) == PAYLOAD
    assert render(Template(Unsafe("{{ 6 * 7 }}"), WHERE), {}) == "{{ 6 * 7 }}"


def test_mark_unsafe_marks_every_nested_string_and_keeps_other_values() -> None:
    marked = mark_unsafe({"tags": {"Name": "x"}, "ports": [1, "2"], "on": True})
    assert is_unsafe(marked["tags"]["Name"]) and is_unsafe(marked["ports"][1])
    assert marked == {"tags": {"Name": "x"}, "ports": [1, "2"], "on": True}


def test_inventory_hostname_is_data() -> None:
    host = Host(name="web1", address="127.0.0.9", port=None, user=None, groups=("all",))
    assert is_unsafe(host_variables(host, playbook())["inventory_hostname"])


def test_terraform_tags_with_a_template_payload_reach_templates_literally(
    project: Path,
) -> None:
    """Written for issue 14: a cloud tag carrying Jinja2 ran code in the deploying process."""
    (project / "inventories" / "staging.tfstate").write_text(
        state({"Name": "web1", "Owner": PAYLOAD, "Team": "{{ 6 * 7 }}"})
    )
    [host] = load_inventory(project / "inventories", "staging").hosts
    variables = host_variables(host, playbook())
    (project / "templates" / "t.j2").write_text(
        "{{ terraform_tags.Owner }}|{{ terraform_tags.Team }}"
    )
    out = render_file(project / "templates" / "t.j2", variables)
    assert out == f"{PAYLOAD}|{{{{ 6 * 7 }}}}"
    assert not Path("/tmp/deployer-pwned").exists()


def test_a_terraform_name_tag_with_a_template_payload_is_refused_at_the_tag(
    project: Path,
) -> None:
    (project / "inventories" / "staging.tfstate").write_text(state({"Name": "web1" + PAYLOAD}))
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "staging")
    error = info.value
    assert error.file == "inventories/staging.tfstate"
    assert error.key_path == "resources[0].instances[0].attributes.tags.Name"
    assert error.reason == f"invalid host name {'web1' + PAYLOAD!r}"


def test_an_inventory_script_value_with_a_template_payload_is_data(project: Path) -> None:
    inventory: dict[str, Any] = {
        "web": {"hosts": ["web1"], "vars": {"motd": "{{ 6 * 7 }}"}},
        "_meta": {"hostvars": {"web1": {"ansible_host": "127.0.0.9", "note": PAYLOAD}}},
    }
    script = project / "inventories" / "staging.py"
    script.write_text(
        textwrap.dedent(f"""\
            #!/usr/bin/env python3
            import json
            print(json.dumps({inventory!r}))
        """)
    )
    script.chmod(0o755)
    [host] = load_inventory(project / "inventories", "staging").hosts
    variables = host_variables(host, playbook())
    assert (
        render(Template("{{ note }} {{ motd }}", WHERE), variables) == f"{PAYLOAD} {{{{ 6 * 7 }}}}"
    )
    assert render(Template("echo {{ note | quote }}", WHERE), variables) == f"echo {quote(PAYLOAD)}"


# ---------------------------------------------------------------- host names


@pytest.mark.parametrize(
    "name",
    [
        "web1",
        "web-1.example.com",
        "db_primary",
        "_x",
        "127.0.0.1",
        "::1",
        "fe80::1%eth0",
        "a" * 200,
    ],
)
def test_plain_host_names_and_ip_literals_are_accepted(name: str) -> None:
    check_host_name(name, WHERE)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "web1{{ x }}",
        "web 1",
        "web1;reboot",
        "web'1",
        'web"1',
        "web1$(id)",
        "-oProxyCommand=x",
        ".web",
        "web\x1b[2J",
        "wéb",
        "fe80::1%{{x}}",
        "web[01:03]",
    ],
)
def test_other_host_names_are_refused_naming_file_key_and_host(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_host_name(name, WHERE)
    assert str(info.value).startswith(
        f"playbooks/deploy.yml:12: restart: invalid host name {name!r}"
    )


def test_a_yaml_inventory_host_name_is_checked_at_its_line(project: Path) -> None:
    (project / "inventories" / "staging.yml").write_text(
        "all:\n  hosts:\n    web1:\n    'web2 {{ 1 }}':\n"
    )
    with pytest.raises(ConfigError) as info:
        load_inventory(project / "inventories", "staging")
    assert info.value.file == "inventories/staging.yml"
    assert info.value.line == 4
    assert "invalid host name 'web2 {{ 1 }}'" in info.value.reason
