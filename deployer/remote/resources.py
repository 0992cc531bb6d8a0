"""The lines the `prepare` script runs to report a host's resource use: CPU count and load,
memory available, disk and inodes free under deploy_to, and the app's processes (from a
pidfile or a systemd unit) with their CPU share and resident memory. Read-only, from /proc
and df only (no procps needed); parsed by `deployer.resources`. Built as data, quoted here."""

from __future__ import annotations

from shlex import quote as q

__all__ = ["HOST_REPORT", "resource_lines"]

# `df_dir` is set by the prepare script (deploy_to, or its nearest existing parent).
# The `resources` value: key=value words; prepare frames it (`scripts.section`).
HOST_REPORT = (
    'echo "cpus=$(nproc 2>/dev/null)"'
    " \"load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | tr ' ' ,)\""
    ' "mem=$(awk \'/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t","a}\''
    ' /proc/meminfo 2>/dev/null)"'
    ' "disk=$(df -Pk "$df_dir" 2>/dev/null | awk \'NR==2{print $2","$4}\')"'
    ' "inodes=$(df -Pi "$df_dir" 2>/dev/null | awk \'NR==2{print $2","$4}\')"'
)

# One line per process: pid, CPU % over its lifetime (as ps computes %CPU), RSS KiB, name,
# base64 as one value: the name is the process's own to choose (newlines, escapes and all).
# @MARK@ stands for the output marker (put in with str.replace: the lines are full of braces).
_PROC_FN = [
    "proc_line() {",
    '  [ -r "/proc/$1/stat" ] || return 0',
    "  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)",
    "  up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0)",
    "  rss=$(awk '/^VmRSS:/{print $2}' \"/proc/$1/status\" 2>/dev/null || true)",
    '  comm=$(cat "/proc/$1/comm" 2>/dev/null || true)',
    # stat is "pid (name) state ...": one line, whatever the name, before the name is cut.
    '  nums=$(tr "\\n" " " < "/proc/$1/stat" 2>/dev/null | sed \'s/^.*) //\''
    ' | awk -v p="$1" -v hz="$hz"'
    ' -v up="$up" -v rss="${rss:-0}"'
    " '{t=($12+$13)/hz; age=up-$20/hz; printf \"%s %.1f %s\", p, (age>0?100*t/age:0), rss}'"
    " || true)",
    '  [ -n "$nums" ] || return 0',
    '  printf \'%s %s\\n\' "@MARK@proc" "$(printf \'%s %s\' "$nums" "$comm" | base64 -w0)"',
    "}",
]


def resource_lines(
    mark: str, root: str, *, pidfile: str | None = None, systemd_unit: str | None = None
) -> list[str]:
    """The app's processes, for the prepare script (none unless `pidfile` or `systemd_unit`
    says where to find them); `pidfile` relative to `root` unless absolute. The host's own
    figures are `HOST_REPORT`."""
    if pidfile is None and systemd_unit is None:
        return []
    if systemd_unit is not None:
        source = f"systemd unit {systemd_unit}"
        find = f"pid=$(systemctl show -p MainPID --value {q(systemd_unit)} 2>/dev/null || true)"
    else:
        assert pidfile is not None
        path = pidfile if pidfile.startswith("/") else f"{root.rstrip('/')}/{pidfile}"
        source = f"pidfile {path}"
        find = f"pid=$(head -n1 {q(path)} 2>/dev/null | tr -dc 0-9)"
    return [
        *(line.replace("@MARK@", mark) for line in _PROC_FN),
        find,
        f"echo {q(mark + 'app')} {q(source)}",
        'if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -d "/proc/$pid" ]; then',
        '  proc_line "$pid"',
        '  for child in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do'
        ' proc_line "$child"; done',
        "fi",
    ]
