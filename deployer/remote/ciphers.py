"""Which cipher a connection asks for first. Must never add an algorithm paramiko does not
already offer, nor drop one: only the order changes, so any server that could be reached
before still can.

paramiko offers AES-CTR with a separate HMAC-SHA2 first. AES-GCM (an AEAD, in OpenSSH since
6.2) encrypts and authenticates in one pass: pushing a release through SSH costs the
deploying machine about 40% less CPU per byte with it (issue 18: 200 MB to one host, 0.78 s
with aes128-ctr + hmac-sha2-256, 0.49 s with aes128-gcm), and the SSH push sends the archive
once per host."""

from __future__ import annotations

import socket
from typing import Any

import paramiko

AEAD_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def aead_first_transport(
    sock: socket.socket | paramiko.Channel, **kwargs: Any
) -> paramiko.Transport:
    """paramiko's `transport_factory`: a Transport that prefers AES-GCM, then its own order."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    first = tuple(name for name in AEAD_FIRST if name in offered)
    options.ciphers = first + tuple(name for name in offered if name not in first)
    return transport
