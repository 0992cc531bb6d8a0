"""What every playbook section's parser uses: a mapping's fields (an optional key left empty
is absent), a template checked for Jinja2 syntax, a path inside a release. Validation only."""

from __future__ import annotations

import posixpath

from deployer.config.model import Template
from deployer.config.render import check_template
from deployer.config.yamlfile import Node

__all__ = ["checked_template", "relative_path", "section_fields"]


def section_fields(
    node: Node, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Node]:
    """A mapping's entries; an optional key left empty is treated as absent (its default)."""
    fields = node.mapping(allowed, required)
    return {key: child for key, child in fields.items() if key in required or not child.is_null}


def checked_template(node: Node) -> Template:
    template = Template(node.text(), node.location())
    check_template(template)
    return template


def relative_path(node: Node) -> str:
    """A path inside a release or shared/: relative, and never climbing out with '..'."""
    text = node.text()
    if text.startswith("/"):
        raise node.error(f"must be a relative path, got {text!r}")
    if ".." in text.split("/"):
        raise node.error(f"must not contain '..', got {text!r}")
    normalized = posixpath.normpath(text)
    if normalized == ".":
        raise node.error(f"must name a file or directory, got {text!r}")
    return normalized
