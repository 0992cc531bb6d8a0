"""The artifact store (issue 18) without hosts: the `artifacts:` section, the host's download
command as exact text, and the real stage script run by bash on this machine against a
local HTTP server: a good download is staged, a truncated or refused one never is."""

from __future__ import annotations

import http.server
import io
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest

from deployer.artifacts.fetch import EXIT_FETCH, Fetch
from deployer.config import parse_playbook
from deployer.errors import ConfigError
from deployer.remote import scripts
from deployer.secrets import Secret, redact

BOOK = """
application: app
deploy_to: /srv/app
source: {path: app}
"""
RID = "20261203T100000Z-abc1234"


def book(artifacts: str):
    return parse_playbook(BOOK + "artifacts: " + artifacts + "\n", "deploy.yml").artifacts


# ---------------------------------------------------------------- settings


def test_ssh_is_the_default_and_takes_no_store_keys() -> None:
    assert parse_playbook(BOOK, "deploy.yml").artifacts.store == "ssh"
    assert book("{store: ssh}").store == "ssh"
    with pytest.raises(ConfigError, match="only used with store: s3") as err:
        book("{store: ssh, bucket: b}")
    assert "artifacts.bucket" in str(err.value)


def test_s3_settings_are_read_and_normalised() -> None:
    store = book(
        "{store: s3, bucket: my-releases, prefix: deploys, endpoint_url: 'https://minio:9000/',"
        " region: auto, addressing: path, url_ttl: 30, access_key_id_env: R2_KEY,"
        " secret_access_key_env: R2_SECRET, fetch_with: python3}"
    )
    assert (store.store, store.bucket, store.prefix) == ("s3", "my-releases", "deploys/")
    assert store.endpoint_url == "https://minio:9000" and store.region == "auto"
    assert store.addressing == "path" and store.url_ttl == 30.0
    assert (store.access_key_id_env, store.secret_access_key_env) == ("R2_KEY", "R2_SECRET")
    assert store.fetch_with == "python3"
    defaults = book("{store: s3, bucket: b-1}")
    assert defaults.url_ttl == 300.0 and defaults.prefix == "" and defaults.endpoint_url is None


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        ("{store: s3}", "missing required key 'bucket'"),
        ("{store: s3, bucket: B_x}", "not a valid bucket name"),
        ("{store: s3, bucket: b-1, endpoint_url: minio:9000}", "http:// or https://"),
        ("{store: s3, bucket: b-1, url_ttl: 0}", "greater than 0"),
        ("{store: s3, bucket: b-1, url_ttl: 9999999}", "at most"),
        ("{store: s3, bucket: b-1, access_key_id_env: K}", "go together"),
        ("{store: s3, bucket: b-1, access_key_id_env: 'AKIA...', secret_access_key_env: S}",
         "environment variable name"),
        ("{store: gcs}", "one of: ssh, s3"),
        ("{store: s3, bucket: b-1, ttl: 3}", "unknown key"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_key(artifacts: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        book(artifacts)
    assert "deploy.yml" in str(err.value) and "artifacts" in str(err.value)


# ---------------------------------------------------------------- the download command

URL = "https://s3.example.invalid/b/k.tar.gz?X-Amz-Signature=abcdef0123456789"


def test_the_url_travels_on_stdin_as_a_curl_config_line_never_in_the_script() -> None:
    fetch = Fetch(url=Secret(URL), tool="curl")
    assert fetch.stdin() == f'url = "{URL}"\n'.encode()
    size = len(fetch.stdin())
    assert fetch.command("/t/status") == (
        f"{{ head -c {size} | {{ curl --fail --silent --show-error --location"
        ' --connect-timeout 10 --config -; } || echo "$?" > /t/status; }'
    )
    assert redact(f"GET {URL} failed") == "GET *** failed"
    with pytest.raises(ValueError):
        Fetch(url=Secret('https://x/"; rm -rf /')).stdin()


def test_auto_falls_back_to_python3_where_curl_is_missing() -> None:
    text = Fetch(url=Secret(URL)).command("/t/status")
    assert "if command -v curl >/dev/null 2>&1; then curl " in text
    assert "else python3 -c " in text and "urllib.request.urlopen" in text


def test_stage_with_fetch_downloads_into_the_same_verification() -> None:
    fetch = Fetch(url=Secret(URL), tool="curl", where="s3://b/k")
    script = scripts.stage(
        scripts.Layout("/srv/app"), RID, "r1", archive=None, archive_size=10,
        archive_sha256="ab" * 32, host_files=b"tar!", shared_dirs=[], shared_files=[],
        fetch=fetch,
    )  # fmt: skip
    text = script.render()
    assert URL not in text and "X-Amz" not in text
    assert script.stdin.segments == (fetch.stdin(), b"tar!")
    status = f"/srv/app/.deploy/staging/{RID}.r1/fetch.status"
    assert f"{fetch.command(status)} | head -c 10 | tee -p /dev/fd/3" in text
    download_failed = text.index(f"if [ -s {status} ]")
    assert text.index("sum=$(") < download_failed < text.index("checksum mismatch")
    assert "@@step download" in text and "@@step upload" not in text


# ---------------------------------------------------------------- run for real, locally


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('hello')\n" * 500
        info = tarfile.TarInfo("app.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        manifest = f"{sha256(data).hexdigest()}  app.py\n".encode()
        info = tarfile.TarInfo("MANIFEST")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return buf.getvalue()


ARCHIVE = _archive()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/expired"):
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"<Error><Code>AccessDenied</Code></Error>")
            return
        body = ARCHIVE[: len(ARCHIVE) // 2] if self.path.startswith("/short") else ARCHIVE
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _stage(tmp_path: Path, url: str, tool: str) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    layout = scripts.Layout(str(tmp_path / "app"))
    for path in (layout.releases, layout.shared, layout.state):  # what `prepare` creates
        Path(path).mkdir(parents=True, exist_ok=True)
    fetch = Fetch(url=Secret(url), tool=tool)  # type: ignore[arg-type]
    script = scripts.stage(
        layout, RID, "r1", archive=None, archive_size=len(ARCHIVE),
        archive_sha256=sha256(ARCHIVE).hexdigest(), host_files=b"", shared_dirs=[],
        shared_files=[], fetch=fetch,
    )  # fmt: skip
    stdin = b"".join(s for s in script.stdin.segments if isinstance(s, bytes))
    done = subprocess.run(["bash", "-c", script.render()], input=stdin, capture_output=True)
    return done, Path(layout.release(RID))


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_a_good_download_is_staged(server: str, tmp_path: Path, tool: str) -> None:
    done, release = _stage(tmp_path, f"{server}/ok?X-Amz-Signature=s1", tool)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (release / "app.py").read_bytes().startswith(b"print('hello')")
    assert not any((tmp_path / "app" / ".deploy" / "staging").iterdir())


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_a_truncated_download_is_refused(server: str, tmp_path: Path, tool: str) -> None:
    done, release = _stage(tmp_path, f"{server}/short?X-Amz-Signature=s2", tool)
    assert done.returncode == scripts.EXIT_CHECKSUM, done.stderr
    assert b"checksum mismatch" in done.stderr
    assert not release.exists()
    assert not any((tmp_path / "app" / ".deploy" / "staging").iterdir())


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_a_refused_download_says_so(server: str, tmp_path: Path, tool: str) -> None:
    done, release = _stage(tmp_path, f"{server}/expired?X-Amz-Signature=s3", tool)
    assert done.returncode == EXIT_FETCH, done.stderr
    assert b"returned error: 403" in done.stderr and b"expired URL" in done.stderr
    assert b"checksum" not in done.stderr and b"X-Amz-Signature" not in done.stderr
    assert not release.exists()


# ---------------------------------------------------------------- presigning


class SigningClient:
    """boto3's presigning, counted: each call signs a new URL."""

    def __init__(self) -> None:
        self.signed: list[tuple[str, int]] = []

    def generate_presigned_url(self, op: str, Params: dict, ExpiresIn: int) -> str:  # noqa: N803
        self.signed.append((Params["Key"], ExpiresIn))
        return f"https://store.test/{Params['Key']}?X-Amz-Signature=sig{len(self.signed)}x4f2a9"


def test_hosts_share_one_presigned_url_until_half_its_ttl_is_gone(monkeypatch) -> None:
    from deployer.artifacts import store as store_module

    registered: list[str] = []
    real_secret = store_module.Secret

    def counting_secret(value: str) -> Secret:
        registered.append(value)
        return real_secret(value)

    monkeypatch.setattr(store_module, "Secret", counting_secret)
    now = [1000.0]
    client = SigningClient()
    store = store_module.S3Store(
        book("{store: s3, bucket: b-1, url_ttl: 60}"), client, clock=lambda: now[0]
    )

    first = store.fetch("app/a.tar.gz")
    assert [store.fetch("app/a.tar.gz") for _ in range(39)] == [first] * 39
    now[0] += 29.9  # still at least half of the 60 s left
    assert store.fetch("app/a.tar.gz") is first
    assert client.signed == [("app/a.tar.gz", 60)]
    url = first.url.reveal()
    assert registered == [url, url.split("?", 1)[1]]  # the URL and its query, once
    assert redact(f"GET {url}") == "GET ***"

    other = store.fetch("app/delta.tar.gz")  # another object: its own URL
    assert other.url.reveal() != url and len(client.signed) == 2

    now[0] += 0.1  # half the ttl gone: a host would get less than 30 s, so sign again
    again = store.fetch("app/a.tar.gz")
    assert again.url.reveal() not in (url, other.url.reveal())
    assert client.signed[-1] == ("app/a.tar.gz", 60) and len(client.signed) == 3
    assert store.fetch("app/a.tar.gz") is again
    assert redact(again.url.reveal()) == "***"


def test_hosts_arriving_together_get_one_signature() -> None:
    from deployer.artifacts.store import S3Store

    client = SigningClient()
    store = S3Store(book("{store: s3, bucket: b-1}"), client)
    got: list[Fetch] = []
    start = threading.Barrier(20)

    def host() -> None:
        start.wait()
        got.append(store.fetch("app/a.tar.gz"))

    threads = [threading.Thread(target=host) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(client.signed) == 1 and len({id(f) for f in got}) == 1
