"""How often a connection's reader thread wakes while nothing arrives. Must never delay a
byte: a wakeup only happens when the socket has been silent for the whole interval.

paramiko's reader thread reads with a 0.1 s socket timeout, so that it notices a close and
can send keepalives: 10 wakeups a second per connected host, each a timeout exception taking
the GIL, for the whole run. On a 40-host deploy that was the largest per-host cost of the
deploying machine's CPU (issue 18). Connected, a reader needs to wake only for the keepalive,
and closing wakes it at once by shutting its socket down."""

from __future__ import annotations

import contextlib
import socket

import paramiko

READER_WAKE = 5.0  # seconds; paramiko's own is 0.1


def quiet_reader(transport: paramiko.Transport, keepalive: int) -> None:
    """Let a connected transport's reader sleep up to READER_WAKE between packets, or the
    keepalive interval when that is shorter (keepalives are sent on wakeups, so one goes out
    at most READER_WAKE after it is due). Only once connected: the handshake keeps paramiko's
    timing."""
    wake = min(READER_WAKE, float(keepalive)) if keepalive > 0 else READER_WAKE
    transport.sock.settimeout(wake)


def wake_reader(transport: paramiko.Transport | None) -> None:
    """Before closing: shut the socket down, so the reader thread, which may be asleep for
    READER_WAKE, sees the end of the stream and exits now instead of at its next wakeup. A
    jump host's channel or a ProxyCommand is not a socket; closing ends those readers."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
