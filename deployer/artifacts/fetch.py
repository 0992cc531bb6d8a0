"""How a host downloads a release archive itself: a shell command built as data, that reads
its presigned URL from stdin (never from the command line, where `ps` shows it) and prints
the archive on stdout, for `remote.scripts.stage` to verify and unpack as it arrives. Pure:
no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from deployer.remote.shell import Raw, cmd, q
from deployer.secrets import Secret

EXIT_FETCH = 67  # the stage script's exit code when the download itself failed

# The fallback where a host has no curl: python3's standard library only. Errors are printed
# without the URL (urllib's messages do not include it; it would be masked anyway).
_PYTHON = """\
import shutil, sys, urllib.error, urllib.request
url = sys.stdin.read().split('"')[1]
try:
    with urllib.request.urlopen(url, timeout={timeout}) as response:
        shutil.copyfileobj(response, sys.stdout.buffer, 1 << 20)
except urllib.error.HTTPError as error:
    sys.exit(f"python3 urllib: The requested URL returned error: {{error.code}}")
except (OSError, ValueError) as error:
    sys.exit(f"python3 urllib: {{getattr(error, 'reason', error)}}")
"""


@dataclass(frozen=True)
class Fetch:
    """One host's download of one archive: where from (a presigned URL, a `Secret`) and with
    what (`curl`, `python3`, or `auto`: curl when the host has it)."""

    url: Secret = field(repr=False)
    tool: Literal["auto", "curl", "python3"] = "auto"
    connect_timeout: float = 10.0
    where: str = ""  # shown in errors instead of the URL, e.g. s3://bucket/key

    def stdin(self) -> bytes:
        """The stdin segment the download command reads: one curl config line, `url = "..."`
        (python3 reads the same line)."""
        url = self.url.reveal()
        if any(c in url for c in '"\\\n\r'):
            raise ValueError("a presigned URL with quotes, backslashes or newlines")
        return f'url = "{url}"\n'.encode()

    def command(self, status_file: str) -> str:
        """Shell text printing the archive on stdout; reads `stdin()` first. When the download
        fails, its exit status is written to `status_file` (the pipeline it feeds cannot
        carry it)."""
        size = len(self.stdin())
        curl = cmd(
            "curl", "--fail", "--silent", "--show-error", "--location",
            "--connect-timeout", f"{self.connect_timeout:g}", "--config", "-",
        )  # fmt: skip
        python = cmd("python3", "-c", _PYTHON.format(timeout=f"{self.connect_timeout:g}"))
        if self.tool == "curl":
            download = curl
        elif self.tool == "python3":
            download = python
        else:
            download = f"if command -v curl >/dev/null 2>&1; then {curl}; else {python}; fi"
        return (
            f"{{ {cmd('head', '-c', size, Raw('|'))} {{ {download}; }}"
            f' || echo "$?" > {q(status_file)}; }}'
        )

    def check(self, status_file: str, archive_sha256: str) -> str:
        """A script line, run before the checksum is judged: when the archive did not arrive
        whole because the download failed, say that (not "checksum mismatch")."""
        message = (
            f"downloading the release archive from {self.where or 'the artifact store'} failed"
            " (exit %s of the download; its message is above). An HTTP 403 is usually an"
            " expired URL (raise artifacts.url_ttl, or check this host's clock), a 404 an"
            " object removed from the store"
        )
        report = cmd("printf", message + "\\n", Raw('"$(cat ' + q(status_file) + ')"'))
        return (
            f'if [ -s {q(status_file)} ] && [ "${{sum%% *}}" != {q(archive_sha256)} ]; then '
            f"{report} >&2; exit {EXIT_FETCH}; fi"
        )
