"""Camera URL validation and redaction: the only code that parses credentials; never logs or stores them."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from streamer.errors import InvalidCameraURL

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
REDACTED = "***"
# Query parameters some cameras use to carry secrets (e.g. `...?user=admin&password=...`).
SECRET_PARAMS = frozenset(
    {
        "password",
        "pass",
        "passwd",
        "pwd",
        "token",
        "auth",
        "key",
        "apikey",
        "api_key",
        "secret",
        "signature",
        "sig",
        "access_token",
        "pw",
        "psw",
        "loginpas",
        "loginpass",
        "loginpwd",
        "user_pwd",
        "passphrase",
        "credential",
        "credentials",
        "client_secret",
        "private_key",
        "session",
        "sessionid",
    }
)
# `scheme://user[:password]@` anywhere in free text (FFmpeg error messages repeat the URL they opened).
# Greedy up to the last `@` of the run of non-space characters, so a password holding an unescaped `@`, `/`,
# `#`, `?` or a quote cannot leak (a path with an `@` in it is redacted too: the safe side).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>\S+)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)(?P<value>[^&;#\s]*)", re.IGNORECASE
)


def redact(url: str) -> str:
    """Return `url` (or any text containing URLs) with credentials replaced by ``***``.

    User names and passwords in the authority part become ``***:***@``; secret-looking query parameters
    (``password=``, ``token=``, ...) keep their name but lose their value. Text without credentials is
    returned unchanged. Use it for every log line, status reason, metric label and API body.

    Args:
        url: a URL or free text such as an FFmpeg error message.

    Returns:
        The same text with every credential replaced.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}:{REDACTED}@", url)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}{REDACTED}", text)


def is_file_url(url: str) -> bool:
    """Whether `url` names a local file (a ``file://`` URL or a plain path)."""
    scheme = urlsplit(url).scheme.lower()
    return scheme == "file" or scheme == "" or (len(scheme) == 1 and url[1:3] in {":\\", ":/"})


def validate_url(url: str, allow_files: bool = True) -> str:
    """Check a camera URL and return what to open: the URL itself, or a plain path for local files.

    Accepted: ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` with a host, and (when `allow_files`)
    ``file://`` URLs or paths of existing regular files. Nothing is connected to.

    Args:
        url: what the user configured.
        allow_files: whether local files are acceptable (an API may refuse server-side paths).

    Returns:
        The URL unchanged for network sources; the decoded filesystem path for local files.

    Raises:
        InvalidCameraURL: with the redacted URL and a reason a user can act on.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidCameraURL(redact(str(url)), "empty URL")
    if url != url.strip() or any(c in url for c in "\r\n\t"):
        raise InvalidCameraURL(redact(url.strip()), "URL contains whitespace or control characters")
    if is_file_url(url):
        return _validate_file(url, allow_files)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in NETWORK_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in sorted(NETWORK_SCHEMES)) + (
            ", file:// or a path" if allow_files else ""
        )
        raise InvalidCameraURL(redact(url), f"unsupported scheme {scheme + '://'!r}; use {allowed}")
    if not parts.hostname:
        raise InvalidCameraURL(redact(url), "missing host name")
    try:
        port = parts.port
    except ValueError:
        raise InvalidCameraURL(redact(url), "port is not a number between 0 and 65535") from None
    if port == 0:
        raise InvalidCameraURL(redact(url), "port 0 is not a valid camera port")
    return url


def _validate_file(url: str, allow_files: bool) -> str:
    if not allow_files:
        raise InvalidCameraURL(
            redact(url), "local files are not allowed here; use rtsp://, rtsps://, http(s)://"
        )
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in {"", "localhost"}:
            raise InvalidCameraURL(
                redact(url), "file:// URLs must name a local path (file:///path/to/video.mp4)"
            )
        path = Path(unquote(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.exists():
        raise InvalidCameraURL(redact(url), f"no such file: {path}")
    if not path.is_file():
        raise InvalidCameraURL(redact(url), f"not a regular file: {path}")
    return str(path)


def host_and_port(url: str) -> tuple[str, int]:
    """The host and port a network URL connects to (default ports per scheme: rtsp 554, rtsps 322, ...)."""
    parts = urlsplit(url)
    defaults = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
    return parts.hostname or "", parts.port or defaults.get(parts.scheme.lower(), 0)
