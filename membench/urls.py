"""The one parser of the URLs membench is given (--broker, MEMBENCH_BROKER_URL, --prometheus,
--grafana-url) and `redact`, which takes a password out of anything membench prints or writes.

`parse_url` refuses, before anything connects or resolves a name, every URL whose userinfo is
ambiguous (a raw "@", "/", "?" or "#" typed in a password: the rest of the password would be
read as a host, printed and sent to the DNS resolver). Its errors never hold the URL's text nor
a library's message about it: at most the scheme, which is only shown when it was followed by
"://" and looks like one.

`redact` is ours, not kombu's `maybe_sanitize_url`: kombu's parses one URL, so a URL inside a
message or an argv line keeps its password, as does a lone userinfo (redis://PASSWORD@host);
it also drops the query and rewrites an IPv6 host (tests/test_urls.py shows each).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

# scheme "://" rest: the scheme as RFC 3986 spells it.
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,15})://(?P<rest>.*)", re.DOTALL)
# What may stand in the userinfo besides its delimiters; "[", "]" and "\" confuse parsers.
_BAD_USERINFO = re.compile(r"[\[\]\\]|%(?![0-9A-Fa-f]{2})")
_HOST_PORT = re.compile(r"(?P<host>\[[^\[\]]*\]|[A-Za-z0-9._-]*)(?::(?P<port>[^:]*))?")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
ENCODE_HINT = (
    "percent-encode such characters in the user and password (@ as %40, / as %2F, ? as %3F, "
    "# as %23, % as %25, [ ] \\ as %5B %5D %5C)"
)

# What a broker URL may be: Redis, plain or over TLS (Celery's redis transport).
BROKER_SCHEMES = ("redis", "rediss")
BROKER_FORM = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"


class UrlError(ValueError):
    """A refused URL; the one-line message holds no text of the URL but, at most, its scheme."""


def parse_url(
    url: str, schemes: tuple[str, ...], example: str, *, credentials: bool = True
) -> SplitResult:
    """`url` split, once it is unambiguously `scheme://[user[:password]@]host[:port]...` with a
    scheme of `schemes` (and no user:password unless `credentials`); UrlError otherwise.
    `example` shows the expected form in errors."""
    wanted = " or ".join(f"{s}://" for s in schemes)
    if not url:
        raise UrlError(f"the URL is empty (expected {example})")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlError("the URL holds whitespace or a control character")
    found = _SCHEME.fullmatch(url)
    if found is None:
        # No "scheme://" (":PASSWORD@host", "redis//...", "redis:/..."): whatever stands before
        # the first ":" may be a password, so nothing of it is shown.
        raise UrlError(f"the URL is not a {wanted} URL: expected {example}")
    if found["scheme"] not in schemes:  # in lower case, as Celery's transports are named
        raise UrlError(f"the URL is not a {wanted} URL (its scheme is {found['scheme']!r})")
    rest = found["rest"]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, after = rest[:end], rest[end:]
    if "@" in after or authority.count("@") > 1:
        raise UrlError(
            "the URL's user:password holds a raw '@', '/', '?' or '#' (the rest of it would be "
            f"read as a host): {ENCODE_HINT}"
        )
    userinfo, at, host_port = authority.rpartition("@")
    if at and not credentials:
        raise UrlError("the URL may not hold a user:password (nothing would send it)")
    if at and _BAD_USERINFO.search(userinfo):
        raise UrlError(
            f"the URL's user:password holds a raw '[', ']', '\\' or a lone '%': {ENCODE_HINT}"
        )
    _check_host_port(host_port)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:  # its message may quote the netloc, password included: not shown
        raise UrlError("the URL is not a valid URL") from None
    if not parts.hostname:
        raise UrlError(f"the URL has no host (expected {example})")
    return parts


def _check_host_port(host_port: str) -> None:
    found = _HOST_PORT.fullmatch(host_port)
    if found is None or not found["host"]:
        raise UrlError(
            "the URL is not a valid URL: its host must be a host name, an IPv4 address or an "
            "[IPv6] address, with an optional :PORT"
        )
    host = found["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UrlError("the URL is not a valid URL: its [IPv6] address is not one") from None
    elif not _HOSTNAME.fullmatch(host):
        raise UrlError("the URL is not a valid URL: its host is not a host name")
    port = found["port"]
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise UrlError("the URL's port is not a number from 1 to 65535 (or is an '@' missing?)")


# scheme:[//]userinfo@ : the userinfo runs to the last "@" before a space, so a password typed
# with a raw "/", "#" or "@" is masked whole (a URL parser would cut it short); any scheme, so
# a mistyped one (reddis://) too. Second form: a word with no scheme, "user:password@host".
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:/*)(?P<userinfo>\S*)@"
    r"|(?<![^\s'\"=])(?P<user>[^\s:/@'\"=]*):\S*@"
)
# ?password=..., &passwd=..., ?auth_token=...: any query key that names a secret.
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&;][^\s=&#;?]*(?:pass|secret|token|auth)[^\s=&#;]*=)[^\s&#;]*"
)


def _mask_userinfo(match: re.Match[str]) -> str:
    if match["scheme"] is None:
        return f"{match['user']}:***@"
    user, colon, _ = match["userinfo"].partition(":")
    # No colon: a lone userinfo (redis://SECRET@host) may be the password, masked whole.
    return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"


def redact(text: str) -> str:
    """`text` (a URL, an argv word, a message) with every URL password replaced by ***: the one
    redaction every output uses (results.json, stdout/stderr, logs, error lines)."""
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(_mask_userinfo, text))


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with each secret (4 characters or more: in any case) replaced by ***, however a
    library may have echoed it; then on one line."""
    for secret in sorted(filter(None, set(secrets)), key=len, reverse=True):
        flags = re.IGNORECASE if len(secret) >= 4 else 0
        text = re.sub(re.escape(secret), "***", text, flags=flags)
    return " ".join(text.split())
