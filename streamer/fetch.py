"""HTTP on the policy's terms: redirects followed hop by hop, each hop checked, and HLS playlists and segments
fetched here (FFmpeg's `io_open` hook) so every playlist entry is checked too. Blocking: decode threads only.
"""

from __future__ import annotations

import io
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from streamer.policy import MAX_REDIRECTS, TargetPolicy, TargetRefused, system_resolver
from streamer.urls import redact

HLS_TYPES = frozenset(
    {"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"}
)
MAX_HLS_BYTES = 64 << 20  # one playlist or segment held in memory at most


@dataclass(frozen=True)
class Target:
    """Where a URL leads after its redirects: the final URL and whether it is an HLS playlist."""

    url: str
    hls: bool


class PolicedHTTP:
    """HTTP(S) requests that follow the camera-target policy (None: addresses unchecked, hops still followed
    here) and verify certificates unless told not to."""

    def __init__(
        self, policy: TargetPolicy | None, *, tls_verify: bool, ca_file: str | None, timeout_s: float
    ) -> None:
        self.policy = policy
        self.verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=ca_file) if tls_verify else False
        )
        self.timeout_s = timeout_s

    def _check(self, url: str, origin: str) -> None:
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise TargetRefused(redact(origin), "it leads to a scheme other than http(s)")
        if self.policy is not None:
            self.policy.check(url, system_resolver)

    def _client(self) -> httpx.Client:
        return httpx.Client(verify=self.verify, follow_redirects=False, timeout=self.timeout_s)

    def resolve(self, url: str) -> Target:
        """Follow `url`'s redirects, each hop checked; no answer at all is left for FFmpeg to report.

        Raises:
            TargetRefused: a hop is outside the policy or leaves http(s), or there are too many redirects.
        """
        self._check(url, url)
        current = url
        with self._client() as client:
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    with client.stream("GET", current) as response:
                        location = response.headers.get("location") if response.is_redirect else None
                        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                except httpx.HTTPError:
                    return Target(current, _looks_hls(current, ""))
                if location is None:
                    return Target(current, _looks_hls(current, kind))
                current = urljoin(current, location)
                self._check(current, url)
        raise TargetRefused(redact(url), f"more than {MAX_REDIRECTS} redirects")

    def fetch(self, url: str) -> bytes:
        """The body at `url` (redirects followed and checked), at most MAX_HLS_BYTES.

        Raises:
            OSError: refused, failed, too large, or not a 2xx answer (FFmpeg sees a failed open).
        """
        try:
            target = self.resolve(url)
            with self._client() as client, client.stream("GET", target.url) as response:
                response.raise_for_status()
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_HLS_BYTES:
                        raise OSError(f"more than {MAX_HLS_BYTES} bytes")
                return bytes(body)
        except (TargetRefused, httpx.HTTPError) as exc:
            raise OSError(redact(str(exc))) from None

    def io_open(self, url: str, flags: int, options: dict[str, Any]) -> io.BytesIO:
        """PyAV's `io_open` hook: every nested open of an HLS stream (variant playlists, segments, keys)."""
        return io.BytesIO(self.fetch(url))


def _looks_hls(url: str, content_type: str) -> bool:
    return content_type in HLS_TYPES or urlsplit(url).path.lower().endswith((".m3u8", ".m3u"))
