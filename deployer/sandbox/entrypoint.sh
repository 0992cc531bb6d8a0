#!/bin/sh
# Container entrypoint of a sandbox host: own host key, the deploy key, then sshd on this
# host's own loopback address. Part of the image recipe (its text is hashed into the tag).
set -eu
: "${SSH_ADDRESS:?set SSH_ADDRESS to this host's 127.0.0.N address}"

if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
mkdir -p /run/sshd

if [ -n "${AUTHORIZED_KEY:-}" ]; then
    install -d -o deploy -g deploy -m 0700 /home/deploy/.ssh
    umask 077
    printf '%s\n' "$AUTHORIZED_KEY" >/home/deploy/.ssh/authorized_keys
    chown deploy:deploy /home/deploy/.ssh/authorized_keys
    chmod 0600 /home/deploy/.ssh/authorized_keys
fi

# -e: logs go to stderr, so `docker logs` holds them.
exec /usr/sbin/sshd -D -e -o "ListenAddress=$SSH_ADDRESS" -p "${SSH_PORT:-2222}"
