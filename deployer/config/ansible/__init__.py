"""Ansible's inventory formats, read as ansible-core reads them: INI and YAML files, host
ranges, `group_vars/` and `host_vars/`, and the builder that merges variables in Ansible's order.

Parsing only: nothing here resolves names or connects. `deployer.config.inventory` finds the
sources of an environment and calls in here.
"""
