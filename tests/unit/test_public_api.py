import importlib
import subprocess
import sys

import pytest

import deployer


def test_all_names_exist_and_are_sorted():
    assert sorted(deployer.__all__) == list(deployer.__all__)
    for name in deployer.__all__:
        assert hasattr(deployer, name), name


def test_every_error_is_a_deployer_error():
    for name in deployer.__all__:
        obj = getattr(deployer, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, deployer.DeployerError)


@pytest.mark.parametrize("package", ["deployer", "deployer.api", "deployer.flags"])
def test_every_lazy_export_resolves_to_what_its_module_defines(package):
    """The packages re-export on first use (deployer/lazy.py): each name in `__all__` must
    come from its module, and `dir()` lists it before it is loaded."""
    module = importlib.import_module(package)
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        value = getattr(module, name)
        assert getattr(module, name) is value, name
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_loading_the_tasks_loads_no_api_no_ssh_and_no_templating():
    """`invoke --list` and `shipfleet --help` import deployer.tasks: what a task needs is
    imported when it runs, so listing them costs invoke's own start-up and little more."""
    loaded = _loaded_after("import deployer.tasks")
    for heavy in (
        "paramiko",
        "jinja2",
        "deployer.config",
        "deployer.api.runs",
        "deployer.events",
        "deployer.reporters",
        "deployer.flags.push",
    ):
        assert heavy not in loaded, heavy


def test_a_rolling_deploy_loads_no_optional_feature():
    """The deploy path leaves out what only some playbooks or operations use: the drill,
    blue-green, Prometheus analysis, webhooks and the S3 client."""
    loaded = _loaded_after("import deployer.tasks, deployer.api.runs")
    for optional in (
        "deployer.drill",
        "deployer.strategies.bluegreen.deploy",
        "deployer.analysis.watch",
        "deployer.analysis.step",
        "deployer.reporters.webhook",
        "urllib.request",
        "boto3",
        "botocore",
    ):
        assert optional not in loaded, optional


def test_the_flags_runtime_loads_nothing_of_the_deployer():
    loaded = _loaded_after("import deployer.flags.runtime")
    assert not {m for m in loaded if m.startswith("deployer.")} - {
        "deployer.errors",
        "deployer.lazy",
        "deployer.flags",
        "deployer.flags.runtime",
    }
