"""Camera URLs at rest: Fernet-sealed (AES-128-CBC + HMAC-SHA256, `cryptography`) wherever the service writes
them down, in Redis and in the local write-ahead file.

The key is `SCISSOR_REDIS__ENCRYPTION_KEY` when set; otherwise one is generated on first use and kept in
`<state dir>/encryption.key`, created with mode 0600 (a key file any other user can read is refused). A URL
written by an older version (in clear) still reads, and is written back sealed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from agent.settings import Settings

log = logging.getLogger(__name__)
SEALED = "fernet:"  # what a sealed value starts with; anything else is a plain value from an older version
KEY_FILE = "encryption.key"
KEY_SETTING = "SCISSOR_REDIS__ENCRYPTION_KEY"


class KeyFileError(RuntimeError):
    """The generated key file cannot be used (unreadable, malformed, or readable by other users)."""


class Undecryptable(ValueError):
    """A sealed value does not open with this key (another key sealed it, or it was altered)."""


def state_dir(settings: Settings) -> Path:
    """The local state directory: `SCISSOR_STATE__DIR`, else `$XDG_STATE_HOME/scissor`, else
    `~/.local/state/scissor`."""
    if settings.state.dir is not None:
        return settings.state.dir
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "scissor"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) if missing and return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class UrlCipher:
    """Seals and opens camera URLs with one Fernet key."""

    def __init__(self, key: bytes | str) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlCipher:
        """The cipher for `SCISSOR_REDIS__ENCRYPTION_KEY`, or for the key file in the state directory."""
        if settings.redis.encryption_key is not None:
            return cls(settings.redis.encryption_key.get_secret_value())
        return cls(load_or_create_key(ensure_private_dir(state_dir(settings)) / KEY_FILE))

    def seal(self, url: str) -> str:
        """Return `fernet:<token>`, which reveals nothing of `url` but its rough length."""
        return SEALED + self._fernet.encrypt(url.encode()).decode()

    def open(self, stored: str) -> str:
        """Return the URL a sealed value holds; a plain value (an older version's) is returned as it is.

        Raises:
            Undecryptable: sealed with another key, or altered.
        """
        if not is_sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED).encode()).decode()
        except InvalidToken:
            raise Undecryptable(
                f"a stored camera URL does not decrypt with this key: set {KEY_SETTING} to the key that "
                "sealed it (or restore the state directory's encryption.key)"
            ) from None


def is_sealed(stored: str) -> bool:
    """True for a value `UrlCipher.seal` wrote."""
    return stored.startswith(SEALED)


def load_or_create_key(path: Path) -> bytes:
    """Read the key file at `path`, creating it (mode 0600, fsync'd) with a fresh key when it does not exist.

    Raises:
        KeyFileError: the file is readable or writable by group or others, or does not hold a Fernet key.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = Fernet.generate_key()
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "generated an encryption key for camera URLs at rest in %s; keep it with the Redis data (or set %s)",
        path,
        KEY_SETTING,
    )
    return key


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileError(f"{path} is accessible to other users (mode {mode & 0o777:o}): chmod 600 it")
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise KeyFileError(f"{path} does not hold a Fernet key (32 url-safe base64-encoded bytes)") from None
    return key
