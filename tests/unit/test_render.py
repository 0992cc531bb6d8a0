"""Rendering config strings and template files, and the variables a host sees."""

from __future__ import annotations

from pathlib import Path

import pytest

import deployer.config
from deployer.config import (
    Host,
    Inventory,
    Location,
    Playbook,
    Source,
    Template,
    check_template,
    host_variables,
    render,
    render_file,
)
from deployer.errors import ConfigError

WHERE = Location("playbooks/deploy.yml", 3, "deploy_to")


def template(text: str) -> Template:
    return Template(text, WHERE)


def playbook(**variables: object) -> Playbook:
    return Playbook(
        path="playbooks/deploy.yml",
        application="sample-app",
        deploy_to=template("/srv/{{ application }}"),
        source=Source(path="."),
        vars=variables,
    )


WEB1 = Host(
    name="web1",
    address="127.0.0.61",
    port=2222,
    user="deploy",
    groups=("all", "web", "canary"),
    vars={"ansible_host": "127.0.0.61", "tier": "canary", "app_port": 8001},
)


def test_public_api_is_exported() -> None:
    for name in deployer.config.__all__:
        assert hasattr(deployer.config, name), name


def test_render_plain_and_templated_text() -> None:
    assert render(template("/srv/app"), {}) == "/srv/app"
    assert render(template("/srv/{{ app }}"), {"app": "shop"}) == "/srv/shop"


def test_render_keeps_trailing_newline_and_does_not_escape() -> None:
    assert render(template("echo '{{ x }}' && true\n"), {"x": "<a&b>"}) == "echo '<a&b>' && true\n"


def test_undefined_variable_names_file_line_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        render(template("{{ app_root }}/current"), {})
    assert info.value.message == "playbooks/deploy.yml:3: deploy_to: undefined variable 'app_root'"
    assert info.value.hint == "define it in the inventory vars or the playbook's vars:"
    assert (info.value.file, info.value.line, info.value.key_path) == (
        "playbooks/deploy.yml",
        3,
        "deploy_to",
    )


def test_missing_attribute_is_reported_at_the_template() -> None:
    with pytest.raises(ConfigError) as info:
        render(template("{{ db.host }}"), {"db": {}})
    assert info.value.message == (
        "playbooks/deploy.yml:3: deploy_to: undefined value: 'dict object' has no attribute 'host'"
    )


def test_variables_holding_templates_render_when_used() -> None:
    variables = {
        "base": "/srv/{{ application }}",
        "shared": "{{ base }}/shared",
        "dirs": ["{{ base }}/a", "b"],
        "unused": "{{ not_defined }}",  # never used: no error, as in Ansible
        "application": "shop",
    }
    assert render(template("{{ shared }} {{ dirs | join(',') }}"), variables) == (
        "/srv/shop/shared /srv/shop/a,b"
    )


def test_undefined_inside_a_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        render(template("{{ url }}"), {"url": "http://{{ hostname }}/"})
    assert info.value.message == (
        "playbooks/deploy.yml:3: deploy_to: undefined variable 'hostname' (in variable 'url')"
    )


def test_variables_referring_to_themselves_are_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        render(template("{{ a }}"), {"a": "{{ b }}", "b": "x{{ a }}"})
    assert info.value.message == (
        "playbooks/deploy.yml:3: deploy_to: variable 'a' refers to itself (a -> b -> a)"
    )


def test_syntax_error_is_reported_at_the_template() -> None:
    with pytest.raises(ConfigError) as info:
        check_template(template("{{ unclosed"))
    assert info.value.message.startswith("playbooks/deploy.yml:3: deploy_to: template syntax error")


def test_render_file_names_the_template_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "templates").mkdir()
    path = tmp_path / "templates" / "app.ini.j2"
    path.write_text("[app]\nport = {{ app_port }}\nroot = {{ app_root }}\n")

    assert (
        render_file(path, {"app_port": 1, "app_root": "/srv"}) == "[app]\nport = 1\nroot = /srv\n"
    )
    with pytest.raises(ConfigError) as info:
        render_file(path, {"app_port": 1})
    assert info.value.message == "templates/app.ini.j2:3: undefined variable 'app_root'"
    with pytest.raises(ConfigError) as info:
        render_file(path, {"app_port": 1, "app_root": "{{ base }}"})
    assert info.value.message == (
        "templates/app.ini.j2:3: undefined variable 'base' (in variable 'app_root')"
    )
    path.write_text("ok\n{% for x in %}\n")
    with pytest.raises(ConfigError) as info:
        render_file(path, {})
    assert info.value.message.startswith("templates/app.ini.j2:2: template syntax error: ")


def test_host_variables_precedence_and_magic_variables() -> None:
    inventory = Inventory(
        env="staging",
        path="inventories/staging.yml",
        hosts=(WEB1,),
        groups={"all": ("web1",), "web": ("web1",), "canary": ("web1",)},
    )
    variables = host_variables(
        WEB1,
        playbook(tier="playbook", app_port=8000, only_playbook=1, release="x"),
        {"release": "20240101T000000Z"},
        inventory=inventory,
    )
    assert variables["tier"] == "canary"  # host/inventory vars beat playbook vars
    assert variables["only_playbook"] == 1
    assert variables["release"] == "20240101T000000Z"  # extra beats both
    assert variables["inventory_hostname"] == "web1"
    assert variables["ansible_host"] == "127.0.0.61"
    assert (variables["ansible_port"], variables["ansible_user"]) == (2222, "deploy")
    assert variables["group_names"] == ["canary", "web"]
    assert variables["groups"]["web"] == ["web1"]
    assert variables["application"] == "sample-app"
    assert render(template("{{ ansible_host }}:{{ app_port }}"), variables) == "127.0.0.61:8001"


def test_ansible_host_defaults_to_the_address() -> None:
    host = Host(name="web2", address="web2", port=22, user=None, groups=("all",))
    variables = host_variables(host, playbook(), {})
    assert variables["ansible_host"] == "web2"
    assert "ansible_user" not in variables
    assert "groups" not in variables  # only known when the inventory is passed
