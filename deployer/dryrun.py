"""The dry run: the plan and the exact remote scripts each host would run, printed. Builds
the same `Script` objects the real run sends, so what is shown is what would run.

Rendered templates are listed by path, mode and size, never shown: they may hold secrets,
which is also why they travel on stdin and not in the scripts printed here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.plan import DeployPlan
from deployer.release import Release
from deployer.remote import lb as lb_scripts
from deployer.remote import scripts
from deployer.remote.shell import Script

if TYPE_CHECKING:
    from deployer.strategies.bluegreen.traffic import TrafficPlan


def describe(plan: DeployPlan, release: Release) -> str:
    out = [
        f"DRY RUN: deploy {plan.release_id} to {plan.env} (nothing will connect or change)",
        f"release: {len(release.files)} files, archive {release.archive_size} bytes,"
        f" sha256 {release.archive_sha256}",
        f"batches ({plan.playbook.strategy.kind}, serial {list(plan.playbook.strategy.serial)},"
        f" max_fail_percentage {plan.playbook.strategy.max_fail_percentage:g}):",
    ]
    for index, batch in enumerate(plan.batches, 1):
        out.append(f"  {index}. {', '.join(batch)}")
    out.append(f"migrate on: {plan.migrate_host or '(no migration)'}")
    shared = plan.playbook.shared
    for hp in plan.hosts:
        steps: list[Script] = [
            scripts.prepare(hp.layout, lock_info="<lock info: who, when, from where>"),
            scripts.stage(
                hp.layout,
                plan.release_id,
                plan.run_id,
                archive=release.archive,
                archive_size=release.archive_size,
                archive_sha256=release.archive_sha256,
                host_files=hp.host_files,
                shared_dirs=shared.dirs,
                shared_files=shared.files,
            ),
        ]
        if hp.name == plan.migrate_host and hp.migrate:
            steps.append(scripts.migrate(hp.layout, plan.release_id, hp.migrate, hp.env))
        steps.append(
            scripts.switch(hp.layout, plan.release_id, plan.run_id, restart=hp.restart, env=hp.env)
        )
        steps.append(
            scripts.finish(
                hp.layout,
                plan.run_id,
                history=["<history record>"],
                prune=["<decided from history>"],
            )
        )
        out.append("")
        port = f":{hp.host.port}" if hp.host.port is not None else ""
        out.append(f"== {hp.name} ({hp.host.user or ''}@{hp.host.address}{port})")
        if hp.health_url:
            out.append(f"   health: GET {hp.health_url}")
        if hp.health_command:
            out.append(f"   health: {hp.health_command}")
        for f in hp.host_files.files:
            where = f"shared/{f.dest}" if f.shared else f.dest
            out.append(f"   template: {where} mode {f.mode:04o}, {len(f.content)} bytes")
        for script in steps:
            stdin = f"  [stdin: {script.stdin.size} bytes]" if script.stdin.segments else ""
            out.append(f"-- {script.step}{stdin}")
            out.extend("   " + line for line in script.render().splitlines())
    return "\n".join(out) + "\n"


def describe_traffic(traffic: TrafficPlan) -> str:
    """Blue-green: which hosts are which color, and each load balancer's switch script. Only
    the idle color is deployed (which one is known after the lock); the scripts above are
    what each of its hosts would run."""
    out = ["", "blue-green: only the idle color is deployed; then traffic switches to it"]
    for color in traffic.colors:
        out.append(f"  {color}: {' '.join(traffic.members[color])}")
    for lb in traffic.lbs:
        for color in traffic.colors:
            script = lb_scripts.switch_traffic(
                lb.hp.layout,
                "<run>",
                dest=lb.dest,
                config=lb.configs[color],
                validate=lb.validate,
                reload=lb.reload,
                color=color,
                release="<release>",
                history=["<traffic record>"],
            )
            out.append("")
            out.append(f"== {lb.name}: switch to {color}  [stdin: {script.stdin.size} bytes]")
            out.extend("   " + line for line in lb.configs[color].decode().splitlines())
            out.append("-- traffic")
            out.extend("   " + line for line in script.render().splitlines())
    return "\n".join(out) + "\n"
