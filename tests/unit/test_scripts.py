"""The remote command layer: exact script text, quoting of hostile values."""

import pytest

from deployer.remote import scripts
from deployer.remote.shell import Raw, Script, cmd

L = scripts.Layout("/srv/app")
RID = "20261127T170000Z-abc1234"


def test_cmd_quotes_every_part_but_raw():
    assert cmd("echo", "a b", "$(x)", Raw("&&"), "ok") == "echo 'a b' '$(x)' && ok"


def test_hostile_values_never_become_shell():
    script = scripts.switch(L, "main;touch /tmp/pwned", "run1", restart=None, env={})
    text = script.render()
    assert "'/srv/app/releases/main;touch /tmp/pwned'" in text
    assert "\ntouch /tmp/pwned" not in text


def test_switch_renames_a_fresh_symlink_over_current():
    text = scripts.switch(L, RID, "r1", restart="./bin/restart", env={"RELEASE_ID": RID}).render()
    assert text.splitlines() == [
        "set -eu",
        "echo '@@step switch'",
        f"if [ ! -d /srv/app/releases/{RID} ]; then echo 'release /srv/app/releases/{RID} is"
        " missing' >&2; exit 66; fi",
        f"ln -sfn /srv/app/releases/{RID} /srv/app/.current.r1",
        "mv -T /srv/app/.current.r1 /srv/app/current",
        "echo '@@step restart'",
        f"cd /srv/app/releases/{RID}",
        f"export RELEASE_ID={RID}",
        "./bin/restart",
        f"echo @@switched {RID}",
    ]


def test_prepare_takes_the_lock_with_mkdir_and_reports_facts():
    text = scripts.prepare(L, lock_info='{"run_id": "r1"}').render()
    assert "if mkdir /srv/app/.deploy/lock 2>/dev/null; then" in text
    assert "printf '%s\\n' '{\"run_id\": \"r1\"}' > /srv/app/.deploy/lock/info" in text
    assert f"exit {scripts.EXIT_LOCK_HELD}" in text
    assert "mkdir -p /srv/app/releases /srv/app/shared /srv/app/.deploy" in text


def test_prepare_without_lock_is_read_only():
    text = scripts.prepare(L, lock_info=None).render()
    assert "mkdir" not in text
    assert "@@lock held" in text  # still reports a holder


def test_stage_hashes_while_unpacking_and_renames_last(tmp_path):
    archive = tmp_path / "r.tgz"
    archive.write_bytes(b"x" * 10)
    script = scripts.stage(
        L,
        RID,
        "r1",
        archive=archive,
        archive_size=10,
        archive_sha256="ab" * 32,
        host_files=b"tar!",
        shared_dirs=["log"],
        shared_files=[".env"],
    )
    text = script.render()
    staging = f"/srv/app/.deploy/staging/{RID}.r1"
    # One pass: tee feeds tar and sha256sum; the archive never lands on disk.
    receive = (
        "sum=$({ { head -c 10 | tee -p /dev/fd/3 | sha256sum >&4; } 3>&1 |"
        f" tar -xzf - -C {staging}/tree --no-same-owner >&2; }} 4>&1) || unpacked=no"
    )
    assert receive in text.splitlines()
    assert "release.tar.gz" not in text
    order = [
        text.index(s)
        for s in (
            receive,
            f'if [ "${{sum%% *}}" != {"ab" * 32} ]; then echo',
            f"exit {scripts.EXIT_CHECKSUM}; fi",
            '[ "$unpacked" = yes ] || {',
            f"(cd {staging}/tree && find . -type f -printf '%i %s %T@ %P\\n') | LC_ALL=C awk",
            "head -c 4 | tar -xf -",
            "ln -s /srv/app/shared/log",
            "chmod -R a-w",
            f"mv -T /srv/app/releases/{RID} {staging}/replaced",
            f"[ -L /srv/app/.deploy/verified ] || rm -f /srv/app/.deploy/verified/{RID}",
            f"mv -T {staging}/tree /srv/app/releases/{RID}",
            f"mv -f {staging}/record /srv/app/.deploy/verified/{RID}",
        )
    ]
    assert order == sorted(order)
    # A whole archive is proven by its sha256 and tar's status: its files are not read again;
    # the tree is checked for exactly the MANIFEST's regular files.
    assert "sha256sum -c" not in text
    assert f"-v full=1 -v rec={staging}/record" in text
    assert "(umask 077 && : > /srv/app/shared/.env)" in text
    assert script.stdin.segments == (archive, b"tar!")
    assert script.stdin.size == 14


def test_stage_delta_links_the_rest_from_the_base_release(tmp_path):
    archive = tmp_path / "d.tgz"
    archive.write_bytes(b"x" * 3)
    script = scripts.stage(
        L,
        RID,
        "r1",
        archive=archive,
        archive_size=3,
        archive_sha256="cd" * 32,
        host_files=b"",
        shared_dirs=[],
        shared_files=[],
        base="20261126T000000Z-0000000",
        link_list=b"gz",
    )
    text = script.render()
    link = (
        "head -c 2 | gzip -dc | (cd /srv/app/releases/20261126T000000Z-0000000 &&"
        f" xargs -0 -r cp -l --parents -t /srv/app/.deploy/staging/{RID}.r1/tree --)"
    )
    assert text.index(link) > text.index('[ "$unpacked" = yes ]')
    # Linked files are hashed unless the base's record vouches for them (issue 14: an edited
    # base was carried forward).
    known = "known=/srv/app/.deploy/verified/20261126T000000Z-0000000;"
    hashed = f"(cd /srv/app/.deploy/staging/{RID}.r1/tree && sha256sum -c --quiet --strict"
    assert text.index(link) < text.index(known) < text.index("-v full=0") < text.index(hashed)
    assert script.stdin.segments == (archive, b"gz")


def test_stage_refuses_a_base_that_is_not_a_release_id(tmp_path):
    with pytest.raises(ValueError, match="not a release id"):
        scripts.stage(
            L, RID, "r1", archive=tmp_path, archive_size=1, archive_sha256="cd" * 32,
            host_files=b"", shared_dirs=[], shared_files=[], base="../../etc", link_list=b"x",
        )  # fmt: skip


def test_verify_release_checks_digest_content_and_file_count():
    text = scripts.verify_release(L, RID, "ef" * 32, 2).render()
    final = f"/srv/app/releases/{RID}"
    assert f'[ "$(sha256sum < {final}/MANIFEST | cut -c1-64)" = {"ef" * 32} ]' in text
    assert f"(cd {final} && sha256sum -c --quiet --strict MANIFEST)" in text
    assert f'= "$(( $(wc -l < {final}/MANIFEST) + 1 + 2 ))" ]; then' in text


def test_shared_template_goes_through_mktemp_beside_its_target():
    files = scripts.HostFiles.pack(
        [scripts.RenderedFile("config/db.env", 0o600, b"pw", shared=True)]
    )
    text = scripts.stage(
        L, RID, "r1", archive=b"", archive_size=0, archive_sha256="ab" * 32,
        host_files=files, shared_dirs=[], shared_files=[],
    ).render()  # fmt: skip
    assert "tmp=$(mktemp -p /srv/app/shared/config .db.env.tmp.XXXXXXXXXX)" in text
    assert "if [ -L /srv/app/shared/config ]; then" in text
    assert 'mv -fT "$tmp" /srv/app/shared/config/db.env' in text


def test_prepare_refuses_symlinks_under_deploy_to_but_not_deploy_to_itself():
    text = scripts.prepare(L, lock_info="{}").render()
    for path in ("releases", "shared", ".deploy", ".deploy/staging"):
        assert f"if [ -L /srv/app/{path} ]; then" in text
    assert "[ -L /srv/app ]" not in text
    first_mkdir = text.index("mkdir -p /srv/app/releases")
    assert text.index("if [ -L /srv/app/releases ]") < first_mkdir


def test_finish_never_prunes_current_and_unlocks_only_own_lock():
    text = scripts.finish(L, "r1", history=['{"a":1}'], prune=["old"]).render()
    assert "printf '%s\\n' '{\"a\":1}' >> /srv/app/.deploy/history.jsonl" in text
    assert '[ "$(readlink /srv/app/current || true)" != /srv/app/releases/old ]' in text
    assert (
        "if [ -f /srv/app/.deploy/lock/info ]; then held=; IFS= read -r -d '' held <"
        " /srv/app/.deploy/lock/info || true; case $held in *r1*) rm -rf /srv/app/.deploy/lock ;;"
        " esac; fi"
    ) in text


def test_command_line_is_bash_with_one_quoted_argument():
    s = Script(step="x", lines=("echo 'hi'",))
    assert s.command_line() == "bash -c 'set -eu\necho '\"'\"'hi'\"'\"'\n'"


def test_proxy_jump_from_inventory_vars():
    from deployer.config.model import Host
    from deployer.remote.ssh import Endpoint, parse_jump, proxy_jump

    def host(**vars):
        return Host(name="h", address="a", port=22, user=None, groups=("all",), vars=vars)

    assert proxy_jump(host()) is None
    assert proxy_jump(host(ssh_proxy_jump="ops@bastion:2200")) == "ops@bastion:2200"
    assert proxy_jump(host(ansible_ssh_common_args="-o ProxyJump=b1")) == "b1"
    assert proxy_jump(host(ansible_ssh_common_args="-J u@b2:22 -o Foo=1")) == "u@b2:22"
    assert parse_jump("ops@bastion:2200") == Endpoint("bastion", 2200, "ops")
    assert parse_jump("bastion") == Endpoint("bastion", None, None)


def test_a_failed_connect_ahead_is_raised_by_the_next_command_without_retrying(monkeypatch):
    from deployer.config.model import Host
    from deployer.errors import TransportError
    from deployer.remote.ssh import SSHTransport

    host = Host(name="h", address="127.0.0.2", port=22, user=None, groups=("all",))
    attempts = []

    def refuse(self, h):
        attempts.append(h.name)
        raise TransportError(h.name, "cannot connect to 127.0.0.2:22: refused")

    monkeypatch.setattr(SSHTransport, "_open", refuse)
    transport = SSHTransport()
    transport.connect(host)  # never raises
    try:
        transport.run(host, Script(step="x", lines=("true",)), timeout=1)
    except TransportError as exc:
        assert "refused" in str(exc)
    else:
        raise AssertionError("run() should raise the connect failure")
    assert attempts == ["h"]  # the host was not made to time out twice
