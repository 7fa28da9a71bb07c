"""membench/urls.py: why `redact` is ours rather than kombu's `maybe_sanitize_url` (the forms
where kombu's leaves the password in place), and that ours masks each of them."""

from __future__ import annotations

import pytest
from kombu.utils.url import maybe_sanitize_url

from membench.urls import redact

PW = "S3cretPW"

# Each form membench must mask and kombu's sanitizer leaves readable: a URL inside a message
# (an error line, an argv joined with spaces), a lone userinfo (redis://PASSWORD@host, which
# redis-py reads as the password), and a password in the query string (redis-py's ?password=).
KOMBU_LEAKS = [
    f"broker redis://:{PW}@127.0.0.1:6379/0 refused",
    f"--broker redis://:{PW}@127.0.0.1:6379/0",
    f"redis://{PW}@127.0.0.1:6379/0",
]
# Where both mask the password, kombu also drops the query or mangles an IPv6 host.
KOMBU_REWRITES = [
    (
        f"rediss://:{PW}@host:6380/0?ssl_cert_reqs=required",
        "rediss://:***@host:6380/0?ssl_cert_reqs=required",
    ),
    (f"redis://:{PW}@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
]


@pytest.mark.parametrize("text", KOMBU_LEAKS)
def test_kombu_leaves_the_password_where_redact_masks_it(text: str) -> None:
    assert PW in maybe_sanitize_url(text)
    assert PW not in redact(text)


@pytest.mark.parametrize(("url", "redacted"), KOMBU_REWRITES)
def test_redact_keeps_the_rest_of_the_url_as_it_was(url: str, redacted: str) -> None:
    assert redact(url) == redacted
    assert maybe_sanitize_url(url) != redacted


def test_a_query_password_is_masked_where_kombu_drops_the_query() -> None:
    url = f"redis://127.0.0.1:6379/0?password={PW}"
    assert redact(url) == "redis://127.0.0.1:6379/0?password=***"
    assert maybe_sanitize_url(url) == "redis://127.0.0.1:6379/0"
