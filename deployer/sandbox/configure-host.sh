#!/bin/bash
# Runs once inside the debootstrapped root (chroot) to turn it into a sandbox host image.
# Part of the image recipe: any change here changes the image tag and forces a rebuild.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# Packages' maintainer scripts must not try to start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# Extras for later tests: nginx as a load balancer host, the sqlite3 CLI to inspect app data.
if [ -n "${EXTRA_PACKAGES:-}" ]; then
    apt-get update -q
    # shellcheck disable=SC2086  # a space-separated package list on purpose
    apt-get install -y -q --no-install-recommends $EXTRA_PACKAGES
fi

# The unprivileged account the deployer logs in as, with passwordless sudo like a real
# fleet's deploy user. Password '*' (not '!') so sshd never treats the account as locked.
useradd --uid 1000 --user-group --create-home --home-dir /home/deploy --shell /bin/bash deploy
usermod --password '*' deploy
printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' >/etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
install -d -o deploy -g deploy -m 0700 /home/deploy/.ssh
install -d -o deploy -g deploy -m 0755 /srv

# Every container generates its own host key at start: a shared baked-in key would make
# strict host key checking meaningless.
rm -f /etc/ssh/ssh_host_*

# pam_loginuid cannot write /proc/self/loginuid in an unprivileged container and would
# close every session right after authentication.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd

# Debian's sshd_config includes sshd_config.d/*.conf first, and the first value wins.
cat >/etc/ssh/sshd_config.d/deployer-sandbox.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PubkeyAuthentication yes
UseDNS no
# The deployer health-checks apps through direct-tcpip channels.
AllowTcpForwarding yes
# Parallel deploy steps and benchmarks open many sessions and connections at once.
MaxSessions 20
MaxStartups 100
PrintLastLog no
# Session counts are read back from `docker logs` (sshd runs with -e).
LogLevel VERBOSE
CONF

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* /usr/sbin/policy-rc.d
# Docker mounts its own; the build machine's must not leak into the image.
: >/etc/resolv.conf
