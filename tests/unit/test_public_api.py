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
