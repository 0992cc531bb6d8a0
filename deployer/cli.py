"""The `shipfleet` command: invoke's own `Program` with the deployer's tasks built in (as
Fabric builds `fab`), so `shipfleet deploy --env production` works in any project directory
without a tasks.py. The project root is the current directory, as for `invoke deploy`."""

from __future__ import annotations

from invoke.program import Program

from deployer import __version__
from deployer.tasks import ns

__all__ = ["NAME", "main", "program"]

NAME = "shipfleet"

# binary_names: what `--print-completion-script` registers completion for.
program = Program(namespace=ns, version=__version__, name=NAME, binary=NAME, binary_names=[NAME])


def main() -> None:
    program.run()
