"""Configuration: inventories, playbooks and their templates, validated once at load.

Loaders return the frozen objects of `deployer.config.model`; every problem is a
`ConfigError` naming file, line and key path, raised before anything connects.
"""

from deployer.config.inventory import (
    available_environments,
    load_inventory,
    parse_inventory_ini,
    parse_inventory_yaml,
    select_hosts,
)
from deployer.config.model import (
    HOOK_POINTS,
    Connection,
    Health,
    Hook,
    Host,
    HttpCheck,
    Inventory,
    Location,
    Migrate,
    Playbook,
    Preflight,
    Shared,
    Source,
    Strategy,
    Template,
    TemplateFile,
)
from deployer.config.playbook import load_playbook, parse_playbook, validate_templates_exist
from deployer.config.render import (
    check_template,
    check_template_file,
    host_variables,
    render,
    render_file,
)

__all__ = [
    "HOOK_POINTS",
    "Connection",
    "Health",
    "Hook",
    "Host",
    "HttpCheck",
    "Inventory",
    "Location",
    "Migrate",
    "Playbook",
    "Preflight",
    "Shared",
    "Source",
    "Strategy",
    "Template",
    "TemplateFile",
    "available_environments",
    "check_template",
    "check_template_file",
    "host_variables",
    "load_inventory",
    "load_playbook",
    "parse_inventory_ini",
    "parse_inventory_yaml",
    "parse_playbook",
    "render",
    "render_file",
    "select_hosts",
    "validate_templates_exist",
]
