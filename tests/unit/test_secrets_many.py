"""Issue 18: a store deploy registers two presigned URLs per host as secrets, and every text
of every event is redacted: that was one search of the text per secret (80 at 40 hosts), a
cost per host that grew with the number of hosts. Texts are now searched once per distinct
beginning of the secrets, with exactly the same result."""

from __future__ import annotations

import secrets as random_tokens
import time

from deployer import secrets
from deployer.secrets import MASK, MIN_SUBSTRING, Secret, redact

PREFIX = "http://127.0.4.250:9000/releases/bench/app.tar.gz?X-Amz-Credential="


def naive(text: str) -> str:
    """redact() as it was: every value, longest first."""
    masks = secrets._table[0]  # noqa: SLF001
    for value in masks:
        if len(value) >= MIN_SUBSTRING:
            text = text.replace(value, MASK)
    short = [value for value in masks if len(value) < MIN_SUBSTRING]
    if short:
        text = "\n".join(MASK if line.strip() in short else line for line in text.split("\n"))
    return text


def test_many_secrets_sharing_a_beginning_are_masked_exactly_as_before() -> None:
    token = random_tokens.token_hex(8)
    urls = [f"{PREFIX}{token}{i:03d}" for i in range(60)]
    for url in urls:
        Secret(url)
        Secret(url.split("?", 1)[1])
    inner = f"Credential={token}007"  # a value inside another: the longer one wins
    starry = f"a*b*{token}"  # a value with a `*`, which masking could complete
    Secret(inner)
    Secret(starry)
    Secret("zq")  # short: only a whole line
    texts = [
        "",
        "nothing secret here\n" * 30,
        f"curl -fsS '{urls[7]}' -o /tmp/a\nand {urls[59]}",
        f"the query: {urls[3].split('?', 1)[1]} and {inner} alone",
        f"a*b*{token} and a{MASK[:1]}b*{token}",
        f"{urls[1][:-3]} cut short\nzq\n zq \nzqx",
        urls[10] + urls[11] + inner,
    ]
    for text in texts:
        assert redact(text) == naive(text), text
    assert urls[59] not in redact(texts[2]) and "zq\n" not in redact(texts[5])


def test_a_text_holding_no_secret_is_not_searched_once_per_secret() -> None:
    token = random_tokens.token_hex(8)
    for i in range(400):
        Secret(f"{PREFIX}{token}{i:04d}")
    text = "a line of a step's output, nothing secret in it\n" * 40

    def best(fn: object, repeat: int = 200) -> float:
        times = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(repeat):
                fn()  # type: ignore[operator]
            times.append(time.process_time() - started)
        return min(times)

    assert redact(text) == text == naive(text)
    # Searching for each of the 400 (and other tests' secrets) was a search per secret; now
    # one per distinct beginning: these 400 share one.
    assert best(lambda: redact(text)) < best(lambda: naive(text)) / 4
