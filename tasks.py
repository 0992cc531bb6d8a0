"""This project's tasks are the deployer's own: `invoke --list`."""

from deployer.tasks import ns  # noqa: F401
