"""Jinja2 rendering of config strings and template files, with errors at their file and line.

One shared environment, Jinja2's immutable sandbox (a template can read variables, never
reach Python internals or mutate anything): StrictUndefined (a missing variable is an error,
never ""), no autoescaping (the output is shell commands and config files, not HTML), and a
`quote` filter (shell quoting). Variables whose values are themselves templates are rendered
when first used, as Ansible does, except values marked `Unsafe` (Terraform, inventory
scripts, host names: config/untrusted.py), which are data and never expanded.

`secrets` is a name the deployer owns: in files under templates/ it gives each declared
secret's value; in config strings (commands, URLs, paths, hooks) any use of it is an error,
since those strings end up on a remote command line, in `ps`, and in the dry run.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from deployer.config.model import Host, Inventory, Location, Playbook, Template
from deployer.config.untrusted import Unsafe
from deployer.config.yamlfile import UnsafeText, display_path, read_text
from deployer.errors import ConfigError
from deployer.secrets import redact

if TYPE_CHECKING:
    from deployer.secrets import Secret

__all__ = [
    "FileSecrets",
    "SecretInCommandError",
    "check_template",
    "check_template_file",
    "host_variables",
    "quote",
    "render",
    "render_file",
]

UNDEFINED_HINT = "define it in the inventory vars or the playbook's vars:"
SECRETS_IN_COMMANDS = (
    "secrets cannot be used in commands: they would be visible on the remote command line;"
    " use them in a template file instead"
)
SECRETS_IN_COMMANDS_HINT = (
    "render the value into a file under templates/ (e.g. an env file with shared: true and"
    ' mode: "0600") and have the command read that file'
)

SANDBOX_HINT = (
    "templates run in Jinja2's sandbox: use variables, filters and tests, not Python"
    " attributes or methods that change values"
)


def quote(value: object) -> str:
    """The `quote` filter: one shell word, as Ansible's (None is the empty word)."""
    return shlex.quote("" if value is None else str(value))


# The output is shell commands and config files, not HTML: escaping would corrupt it.
_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701
)
_ENV.filters["quote"] = quote
_STRING_SOURCE = "<config>"  # jinja filename of templates that come from config strings
_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")
_TEMPLATE_MARKERS = ("{{", "{%", "{#")


class _VariableError(Exception):
    """A variable's own template failed; re-raised at the template that used it.

    `chain` lists the variables being rendered, outermost (the one the template named) first.
    """

    def __init__(
        self, chain: tuple[str, ...], reason: str, hint: str | None = None, *, cycle: bool = False
    ) -> None:
        super().__init__(reason)
        self.chain = chain
        self.reason = reason
        self.hint = hint
        self.cycle = cycle


class SecretInCommandError(jinja2.exceptions.SecurityError):
    """`secrets` was used in a config string: it would travel on a command line."""


class UndefinedSecretError(jinja2.exceptions.UndefinedError):
    """A template file named a secret the playbook does not declare."""


class _ForbiddenSecrets:
    """`secrets` as config strings see it: every way of reading it raises."""

    def _refuse(self, *_: object) -> NoReturn:
        raise SecretInCommandError(SECRETS_IN_COMMANDS)

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):  # Jinja and markupsafe probe dunders such as __html__
            raise AttributeError(name)
        self._refuse()

    __getitem__ = __str__ = __iter__ = __bool__ = __len__ = __contains__ = _refuse


class FileSecrets:
    """`secrets` as template files see it: `secrets.NAME` is the declared secret's plain value.

    Not a Mapping on purpose, so variable expansion never treats the values as templates; and
    every non-dunder attribute is a secret name, so no secret can be shadowed by a method.
    The names read are added to `record`, so the plan can refuse to put a secret into a
    world-readable file.
    """

    def __init__(
        self, secrets: Mapping[str, Secret] | None = None, record: set[str] | None = None
    ) -> None:
        object.__setattr__(self, "_secrets", dict(secrets or {}))
        object.__setattr__(self, "_record", record if record is not None else set())

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__"):  # Jinja and markupsafe probe dunders such as __html__
            return object.__getattribute__(self, name)
        return self[name]

    def __getitem__(self, name: str) -> str:
        secrets: dict[str, Secret] = object.__getattribute__(self, "_secrets")
        secret = secrets.get(name)
        if secret is None:
            declared = ", ".join(sorted(secrets)) or "none"
            raise UndefinedSecretError(f"undefined secret '{name}' (declared: {declared})")
        object.__getattribute__(self, "_record").add(name)
        return secret.reveal()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(object.__getattribute__(self, "_secrets")))

    def __str__(self) -> str:
        return f"<secrets: {', '.join(self)}>"

    __repr__ = __str__


_FORBIDDEN = _ForbiddenSecrets()


@functools.lru_cache(maxsize=1024)
def _compile(text: str, filename: str) -> jinja2.Template:
    code = _ENV.compile(text, filename=filename)
    return _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)


def check_template(template: Template) -> None:
    """Raise a ConfigError at the template's location if its Jinja2 syntax is invalid."""
    try:
        _compile(template.text, _STRING_SOURCE)
    except jinja2.TemplateSyntaxError as exc:
        raise _error_at(template.where, f"template syntax error: {exc.message}") from None


def check_template_file(path: Path) -> None:
    """Raise a ConfigError naming the file and line if a template file's syntax is invalid."""
    _compile_file(path)


def render(template: Template, variables: Mapping[str, Any]) -> str:
    """Render a config string; an undefined variable is reported at the string's location."""
    if isinstance(template.text, Unsafe):
        return template.text  # data from outside the project's files: never a template
    if not any(marker in template.text for marker in _TEMPLATE_MARKERS):
        return template.text  # most config strings are plain: skip Jinja entirely
    try:
        compiled = _compile(template.text, _STRING_SOURCE)
    except jinja2.TemplateSyntaxError as exc:
        raise _error_at(template.where, f"template syntax error: {exc.message}") from None
    try:
        return _run(compiled, _LazyVariables(variables, _FORBIDDEN))
    except _VariableError as exc:
        raise _error_at(template.where, _in_variable(exc), exc.hint) from None
    except Exception as exc:  # any failure inside Jinja is a config problem here
        reason, hint = _explain(exc)
        raise _error_at(template.where, reason, hint) from None


def render_file(
    path: Path, variables: Mapping[str, Any], secrets: FileSecrets | None = None
) -> str:
    """Render a file under templates/; errors name the file and the line inside it.
    The only place a secret's value is revealed: `{{ secrets.NAME }}`."""
    compiled, shown, text = _compile_file(path)
    try:
        return _run(compiled, _LazyVariables(variables, secrets or FileSecrets()))
    except _VariableError as exc:
        # Jinja looks names up when a template starts, so the traceback points at line 1;
        # the first use of the variable in the source is where the operator should look.
        line = _first_use(text, exc.chain[0]) if exc.chain else None
        raise ConfigError(_in_variable(exc), file=shown, line=line, hint=exc.hint) from None
    except Exception as exc:  # any failure inside Jinja is a config problem here
        reason, hint = _explain(exc)
        line = _template_line(exc.__traceback__, shown)
        raise ConfigError(reason, file=shown, line=line, hint=hint) from None


def _compile_file(path: Path) -> tuple[jinja2.Template, str, str]:
    shown = display_path(path)
    text = read_text(path, shown)
    try:
        return _compile(text, shown), shown, text
    except jinja2.TemplateSyntaxError as exc:
        message = f"template syntax error: {exc.message}"
        raise ConfigError(message, file=shown, line=exc.lineno) from None


def host_variables(
    host: Host,
    playbook: Playbook,
    extra: Mapping[str, Any] | None = None,
    *,
    inventory: Inventory | None = None,
) -> dict[str, Any]:
    """The variables templates see on one host: playbook vars < host vars < extra.

    Magic variables (inventory_hostname, group_names, groups, application) are set above the
    host's own variables and below `extra`. `groups` needs the inventory.
    """
    variables: dict[str, Any] = {**playbook.vars, **host.vars}
    variables.setdefault("ansible_host", host.address)
    if host.port is not None:
        variables.setdefault("ansible_port", host.port)
    if host.user is not None:
        variables.setdefault("ansible_user", host.user)
    variables["inventory_hostname"] = Unsafe(host.name)
    variables["group_names"] = sorted(group for group in host.groups if group != "all")
    if inventory is not None:
        variables["groups"] = {group: list(names) for group, names in inventory.groups.items()}
    variables["application"] = playbook.application
    variables.update(extra or {})
    return variables


class _LazyVariables(dict[str, Any]):
    """The variables as Jinja sees them: a value that is a template renders on first lookup.

    A dict holding the raw values, so Jinja's own copies (traceback locals, get_all) stay
    raw and cheap; only a lookup by name (`self[key]`) renders.
    """

    def __init__(self, variables: Mapping[str, Any], secrets: object) -> None:
        super().__init__(_ENV.globals)  # range, dict, namespace, ...
        self.update(variables)
        self["secrets"] = secrets  # ours, whatever an inventory calls `secrets`
        self._resolved: dict[str, Any] = {}
        self._resolving: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if key in self._resolved:
            return self._resolved[key]
        raw = super().__getitem__(key)
        if key in self._resolving:
            cycle = " -> ".join((*self._resolving[self._resolving.index(key) :], key))
            chain = (*self._resolving, key)
            raise _VariableError(chain, f"variable '{key}' refers to itself ({cycle})", cycle=True)
        self._resolving.append(key)
        try:
            value = self._expand(raw)
        finally:
            self._resolving.pop()
        self._resolved[key] = value
        return value

    def _expand(self, value: Any) -> Any:
        if isinstance(value, Unsafe):
            return value  # data from outside the project's files: never a template
        if isinstance(value, str):
            if isinstance(value, UnsafeText) or not any(m in value for m in _TEMPLATE_MARKERS):
                return value
            chain = tuple(self._resolving)
            try:
                return _run(_compile(value, _STRING_SOURCE), self)
            except _VariableError:
                raise
            except Exception as exc:  # reported at the template that used it
                reason, hint = _explain(exc)
                raise _VariableError(chain, reason, hint) from None
        if isinstance(value, Mapping):
            return {key: self._expand(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._expand(item) for item in value]
        return value


def _run(compiled: jinja2.Template, variables: _LazyVariables) -> str:
    # A shared context reads variables through the mapping instead of copying them all,
    # which is what lets a variable's template render only when it is used.
    context = compiled.new_context(variables, shared=True)
    try:
        return _ENV.concat(compiled.root_render_func(context))
    except Exception:  # re-raised with the traceback pointing into the template
        _ENV.handle_exception()


def _explain(exc: BaseException) -> tuple[str, str | None]:
    # Jinja's messages quote values (`'dict object' has no attribute '<key>'`), and a key or a
    # filter's argument may be a revealed secret: mask them.
    reason, hint = _reason(exc)
    return redact(reason), hint


def _reason(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, SecretInCommandError):
        return SECRETS_IN_COMMANDS, SECRETS_IN_COMMANDS_HINT
    if isinstance(exc, UndefinedSecretError):
        return exc.message or "undefined secret", "declare it under secrets: in the playbook"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"unsafe template: {exc.message}", SANDBOX_HINT
    if isinstance(exc, jinja2.UndefinedError):
        match = _UNDEFINED.match(exc.message or "")
        if match:
            return f"undefined variable '{match.group(1)}'", UNDEFINED_HINT
        return f"undefined value: {exc.message}", UNDEFINED_HINT
    if isinstance(exc, jinja2.TemplateError):
        return f"template error: {exc.message}", None
    return f"template error: {type(exc).__name__}: {exc}", None


def _in_variable(exc: _VariableError) -> str:
    if exc.cycle:
        return exc.reason
    return f"{exc.reason} (in variable '{exc.chain[-1]}')"


def _first_use(text: str, name: str) -> int | None:
    for node in _ENV.parse(text).find_all(jinja2.nodes.Name):
        if node.name == name and node.ctx == "load":
            return int(node.lineno)
    return None


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _error_at(where: Location, reason: str, hint: str | None = None) -> ConfigError:
    return ConfigError(
        reason, file=where.file, line=where.line, key_path=where.key_path or None, hint=hint
    )
