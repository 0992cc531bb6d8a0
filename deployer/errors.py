"""The one exception tree of the deployer. Only the task layer turns these into exit codes.

DeployerError                 base; every error carries an optional `hint` (what to run next)
├── ConfigError               inventory / playbook / template problem: file, line, key path
├── ReleaseError              the release source is unusable (offending path named)
├── TransportError            cannot reach or trust a host
│   └── HostKeyError          unknown or changed host key (fingerprint shown)
├── RemoteCommandError        a remote step exited non-zero: host, step, command, output tail
├── LockHeldError             another deploy holds the lock: holder, age, release
├── PreflightError            preflight found hosts unfit before anything changed
└── DeployFailed              the run failed; carries every host's outcome and final release
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class DeployerError(Exception):
    """Base class. `hint` tells the operator what to run next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(DeployerError):
    """Bad inventory, playbook or template. Raised before any connection is made."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key_path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key_path = key_path
        where = ""
        if file:
            where = file if line is None else f"{file}:{line}"
        if key_path:
            where = f"{where}: {key_path}" if where else key_path
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.reason = message


class ReleaseError(DeployerError):
    """The release source cannot be built into a safe release."""

    exit_code = 2


class TransportError(DeployerError):
    """A host cannot be reached, authenticated or trusted."""

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        self.host = host
        super().__init__(f"{host}: {message}", hint=hint)


class HostKeyError(TransportError):
    """The host's key is unknown or differs from the known one."""


class RemoteCommandError(DeployerError):
    """A remote step exited non-zero."""

    def __init__(
        self,
        host: str,
        step: str,
        exit_code: int,
        output: str,
        *,
        command: str | None = None,
        full_output: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.host = host
        self.output_full = full_output if full_output is not None else output
        self.step = step
        self.remote_exit_code = exit_code
        self.output = output
        self.command = command
        tail = "\n".join("    " + line for line in output.strip().splitlines()[-15:])
        msg = f"{host}: step '{step}' failed with exit code {exit_code}"
        if tail:
            msg += f"\n{tail}"
        super().__init__(msg, hint=hint)


class LockHeldError(DeployerError):
    """Another deploy holds the lock on one or more hosts."""

    exit_code = 4


class PreflightError(DeployerError):
    """Preflight found hosts unfit; nothing was changed."""

    exit_code = 5


class DeployFailed(DeployerError):
    """The run failed. `releases` maps each host to the release it is on afterwards."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[DeployerError] = (),
        releases: Mapping[str, str | None] | None = None,
        hint: str | None = None,
    ) -> None:
        self.failures = list(failures)
        self.releases = dict(releases or {})
        lines = [message]
        for failure in self.failures:
            lines.extend("  " + line for line in str(failure).splitlines())
        super().__init__("\n".join(lines), hint=hint)
