"""What a deploy costs each host, read from the hosts' own sshd logs (LogLevel VERBOSE), not
from the deployer's events: one SSH connection per host, and one exec session for its steps."""

from __future__ import annotations

import builtins
import hashlib
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.packet import Packetizer

from deployer.errors import TransportError
from deployer.remote import known_hosts
from deployer.remote.shell import Script, Stdin
from deployer.remote.ssh import SSHTransport
from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def test_a_deploy_opens_one_connection_and_one_exec_session_per_host(
    project: Project,
) -> None:
    project.deploy()  # the first deploy; the second is the one measured (delta, pruning)
    (project.app / "VERSION_NOTE").write_text("second\n")
    since = time.time()
    project.deploy()
    counts = project.fleet.sshd_counts(since)
    for host in HOSTS:
        # prepare (lock + facts), stage, switch (+ restart), finish, and migrate on web1, all
        # through the host's step loop (issue 18: it was one session per step). Health checks
        # ride a direct-tcpip channel: no session.
        assert counts[host]["command"] == 1, (host, dict(counts[host]))
        assert counts[host]["sessions"] == 1, (host, dict(counts[host]))
        assert counts[host]["connections"] == 1, (host, dict(counts[host]))
    assert sum(counts["web5"].values()) == 0  # not in the inventory: never contacted


def test_steps_share_the_hosts_session_and_each_runs_as_it_would_on_its_own(
    project: Project,
) -> None:
    host = project.load(limit="web1").hosts[0]
    since = time.time()
    transport = SSHTransport()
    try:

        def run(*lines: str, stdin: bytes = b"", timeout: float = 30) -> tuple[int, str]:
            result = transport.run(host, Script("t", lines, Stdin((stdin,))), timeout=timeout)
            return result.exit_code, result.output

        # A step that ignores its stdin and leaves state behind affects no later step.
        assert run("export LEFT=1", "cd /", "echo $$ > /tmp/first", stdin=b"x" * 9000) == (0, "")
        code, output = run('echo "${LEFT:-unset} $PWD $(wc -c) $$"', stdin=b"12345")
        home = project.fleet.exec("web1", "getent passwd deploy | cut -d: -f6")[1].strip()
        pid = project.fleet.exec("web1", "cat /tmp/first")[1].strip()
        assert code == 0 and output.split()[:3] == ["unset", home, "5"]
        assert output.split()[3] != pid  # a fresh bash each time
        assert run("echo out; echo err >&2; exit 9") == (9, "out\nerr\n")
        # A step has a process group of its own: signalling it leaves the loop running.
        assert run("echo before", "kill 0", "echo after") == (143, "before\n")
        # An archive-sized stdin streams through an exec session of its own.
        big = os.urandom(2 * 1024 * 1024)
        assert (
            run("sha256sum | cut -c1-64", stdin=big)[1].strip() == hashlib.sha256(big).hexdigest()
        )
        # A step that outlives its timeout loses the connection; the next one reconnects.
        started = time.monotonic()
        # A process left in the background with the step's output holds the step as long.
        with pytest.raises(TransportError, match="timed out after 1s") as held:
            run("sleep 20 &", "echo started", timeout=1)
        assert "left in the background" in str(held.value)
        assert time.monotonic() - started < 5
        assert run("echo back") == (0, "back\n")
    finally:
        transport.close()
    counts = project.fleet.sshd_counts(since)["web1"]
    # The loop, the archive's session; after the timeout, a new connection and loop.
    assert (counts["connections"], counts["sessions"]) == (2, 3), dict(counts)


def test_a_step_that_arrives_while_its_hosts_loop_is_busy_gets_a_session_of_its_own(
    project: Project,
) -> None:
    host = project.load(limit="web1").hosts[0]
    transport = SSHTransport()
    try:
        assert transport.run(host, Script("t", ("true",)), timeout=30).ok
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(
                transport.run, host, Script("slow", ("sleep 1", "echo slow")), timeout=30
            )
            time.sleep(0.3)
            quick = transport.run(host, Script("quick", ("echo quick",)), timeout=30)
            assert quick.output == "quick\n" and quick.duration < 0.9
            assert slow.result().output == "slow\n"
    finally:
        transport.close()


def test_a_step_loop_killed_on_the_host_fails_the_step_as_a_lost_connection(
    project: Project,
) -> None:
    host = project.load(limit="web1").hosts[0]
    transport = SSHTransport()
    try:
        with pytest.raises(TransportError, match="connection lost during step 'doomed'"):
            # The loop is this step's grandparent (loop, its pipeline's subshell, the step).
            transport.run(
                host, Script("doomed", ("sleep 0.2", "pkill -KILL -f 'while IFS='")), timeout=30
            )
        assert transport.run(host, Script("t", ("echo again",)), timeout=30).output == "again\n"
    finally:
        transport.close()


def test_a_deploy_sends_each_host_little_besides_the_release_archive(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: with the artifact store, what each host's SSH session carries is all the
    # deploying machine sends per host; it was 25 KB, 10 of them a templates tar padded to a
    # 10 KiB record and 12 the scripts' text. Counted as written to each host's socket.
    sent: Counter[str] = Counter()
    write_all = Packetizer.write_all

    def counted(self: Packetizer, out: bytes) -> None:
        sent[self._Packetizer__socket.getpeername()[0]] += len(out)  # type: ignore[attr-defined]
        write_all(self, out)

    archives: Counter[str] = Counter()
    run = SSHTransport.run

    def recorded(self: SSHTransport, host: Any, script: Script, **kwargs: Any) -> Any:
        if script.step == "stage":  # the archive is the stage session's first stdin segment
            archives[host.address] += Stdin(script.stdin.segments[:1]).size
        return run(self, host, script, **kwargs)

    monkeypatch.setattr(Packetizer, "write_all", counted)
    monkeypatch.setattr(SSHTransport, "run", recorded)
    project.deploy()
    (project.app / "VERSION_NOTE").write_text("second\n")
    project.deploy()  # a delta: the link list travels too
    hosts = project.load().hosts
    assert len(hosts) == 4 and set(archives) == {h.address for h in hosts}
    for host in hosts:
        besides = sent[host.address] - archives[host.address]
        # Two deploys, each: the handshake and authentication (about 1.3 KB of it intrinsic),
        # prepare, stage (its templates), switch, finish; migrate on one host.
        assert besides <= 2 * 12_000, (host.name, besides, sent[host.address])


def test_an_idle_connection_costs_the_deploying_machine_no_wakeups_and_closes_at_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: paramiko's reader woke every 0.1 s on every connection for the whole run, a
    # timeout exception each time (on 40 hosts, the largest per-host CPU cost). It checks
    # the keepalive on each wakeup: counting those checks counts the wakeups.
    wakeups: list[int] = []
    check = Packetizer._check_keepalive

    def counted(self: Packetizer) -> None:
        wakeups.append(1)
        check(self)

    monkeypatch.setattr(Packetizer, "_check_keepalive", counted)
    host = project.load(limit="web1").hosts[0]
    transport = SSHTransport()
    try:
        assert transport.run(host, Script("probe", ("true",)), timeout=30).exit_code == 0
        reader = transport._connections[host.name].client.get_transport()  # noqa: SLF001
        assert isinstance(reader, paramiko.Transport) and reader.is_alive()
        wakeups.clear()
        time.sleep(1.5)
        assert len(wakeups) <= 1, f"{len(wakeups)} wakeups in 1.5 s of silence"
        assert transport.run(host, Script("probe", ("echo still here",)), timeout=30).ok
        started = time.monotonic()
    finally:
        transport.close()
    # Closing ends the reader thread now, not at its next wakeup.
    reader.join(1.0)
    assert not reader.is_alive()
    assert time.monotonic() - started < 1.0


def test_connections_negotiate_aes_gcm_so_a_pushed_byte_costs_less_cpu(project: Project) -> None:
    # Issue 18: paramiko offers AES-CTR + HMAC first; GCM authenticates in the same pass.
    host = project.load(limit="web1").hosts[0]
    transport = SSHTransport()
    try:
        payload = b"x" * 300_000
        script = Script("probe", ("wc -c",), Stdin((payload,)))
        result = transport.run(host, script, timeout=30)
        assert result.ok and result.output.strip() == str(len(payload))
        negotiated = transport._connections[host.name].client.get_transport()  # noqa: SLF001
        assert negotiated is not None
        assert (negotiated.local_cipher, negotiated.remote_cipher) == (
            "aes128-gcm@openssh.com",
            "aes128-gcm@openssh.com",
        )
    finally:
        transport.close()


def test_a_run_reads_its_private_key_and_known_hosts_once_not_once_per_host(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: paramiko read and parsed the key file as RSA, ECDSA then Ed25519 for every
    # connection (three reads per host), and every connection parsed the whole known_hosts.
    hosts = project.load().hosts
    key = os.path.expanduser(hosts[0].key_file or "")
    opened: list[str] = []
    real = builtins.open

    def counted(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    parses: list[str] = []
    parse = known_hosts._parse  # noqa: SLF001
    monkeypatch.setattr(
        known_hosts, "_parse", lambda text, file: parses.append(file) or parse(text, file)
    )
    since = time.time()
    transport = SSHTransport()
    try:
        for host in hosts:
            assert transport.run(host, Script("probe", ("true",)), timeout=30).ok
    finally:
        transport.close()
    counts = project.fleet.sshd_counts(since)
    assert [counts[h.name]["connections"] for h in hosts] == [1] * len(hosts)
    assert len(hosts) == 4 and opened.count(key) == 3  # once per key type tried, was 12
    assert parses.count(hosts[0].known_hosts_file or "") == 1


def test_a_loop_that_ended_while_idle_is_replaced_before_the_next_step(project: Project) -> None:
    # An sshd with ChannelTimeout closes a session idle for a while (a long canary bake);
    # nothing of the next step was sent to it, so it runs in a new loop instead of failing.
    host = project.load(limit="web1").hosts[0]
    transport = SSHTransport()
    try:
        assert transport.run(host, Script("t", ("echo one",)), timeout=30).ok
        code, _ = project.fleet.exec("web1", "pkill -KILL -u deploy -f 'while IFS='")
        assert code == 0
        session = transport._steps._sessions[host.name]  # noqa: SLF001
        deadline = time.monotonic() + 10
        while not session.ended() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.ended()
        assert transport.run(host, Script("t", ("echo two",)), timeout=30).output == "two\n"
    finally:
        transport.close()
