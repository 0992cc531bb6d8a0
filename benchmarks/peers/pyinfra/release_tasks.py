"""Included by deploy.py and deploy_sync.py once the release tree is in releases/<id>: link
the shared dirs into it, render the host's config files, run the migration once."""

from jinja2 import Template
from pyinfra import host
from pyinfra.operations import files, server

deploy_to = host.data.deploy_to
shared_path = f"{deploy_to}/shared"
release_id = host.data.release_id
release_path = f"{deploy_to}/releases/{release_id}"

for shared_dir in host.data.shared_dirs:
    files.directory(name=f"Create shared/{shared_dir}", path=f"{shared_path}/{shared_dir}")
    files.link(
        name=f"Link shared/{shared_dir} into the release",
        path=f"{release_path}/{shared_dir}",
        target=f"{shared_path}/{shared_dir}",
    )

# Our playbook's vars are Ansible-style templates (`{{ ansible_host }}`): render them per host.
app_vars = {
    key: Template(value).render(ansible_host=host.data.ssh_hostname)
    if isinstance(value, str)
    else value
    for key, value in host.data.app_vars.items()
}
for template in host.data.config_templates:
    files.template(
        name=f"Render {template['dest']}",
        src=f"templates/{template['src']}",
        dest=f"{release_path}/{template['dest']}",
        mode=template["mode"],
        deploy_to=deploy_to,
        shared_path=shared_path,
        release_path=release_path,
        release_id=release_id,
        **app_vars,
    )

if host.data.migrate_command:
    server.shell(
        name="Run the migration once, from the new release",
        commands=[f"cd {release_path} && {host.data.migrate_command}"],
        _env={"RELEASE_ID": release_id, "RELEASE_PATH": release_path},
        _run_once=True,
    )
