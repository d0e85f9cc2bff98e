"""Where a camera URL may point: the camera-target policy, checked on the URL and on every redirect hop.

A camera URL makes this process connect somewhere and turn what it reads into pictures an API hands back, so
the URL is a trust boundary. The policy:
- schemes rtsp, rtsps, http, https only (`streamer.urls.validate_url`; files only where the caller allows);
- FFmpeg is told which protocols and demuxers it may use (`ffmpeg_guard_options`): the ones cameras speak,
  nothing that renders text (`tty`), reads local files or lists directories;
- every address a host name resolves to must lie in the allowed networks (`allow_nets`; the default suits a
  camera LAN: the private IPv4 ranges, carrier-grade NAT and IPv6 unique-local), and never in the link-local
  or cloud-metadata ranges, whatever `allow_nets` says;
- HTTP redirects are followed by `streamer.fetch`, hop by hop, each hop checked; FFmpeg itself follows none,
  and HLS playlists and segments are fetched there too, each entry checked.
A refusal names the setting that governs it, so an operator knows what to change; what a refused target
would have answered is never reported.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from streamer.errors import InvalidCameraURL
from streamer.urls import host_and_port, redact

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

ALLOW_NETS_SETTING = "SCISSOR_CAMERA__ALLOW_NETS"
DEFAULT_ALLOW_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
# Never a camera, whatever the allowed networks say: link-local (cloud metadata services answer on
# 169.254.169.254 and fd00:ec2::254), "this network", multicast, broadcast, and Alibaba's metadata address.
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "ff00::/8",
        "fd00:ec2::254/128",
        "100.100.100.200/32",
        "::/128",
    )
)
# FFmpeg's AVFormatContext whitelists: the protocols and demuxers camera streams use. Local files add `file`.
NETWORK_PROTOCOLS = (
    "rtsp",
    "rtsps",
    "rtp",
    "srtp",
    "udp",
    "tcp",
    "tls",
    "http",
    "https",
    "httpproxy",
    "crypto",
)
CAMERA_FORMATS = (
    "rtsp", "sdp", "rtp", "mov", "mp4", "matroska", "webm", "mpegts", "hls", "applehttp", "mjpeg", "mpjpeg",
    "flv", "h264", "hevc", "avi", "m4v", "mpeg", "ivf",
)  # fmt: skip
HLS_FORMATS = ("hls", "applehttp")
# Only an RTSP session may use these: an SDP file (fetched over HTTP) would make FFmpeg bind RTCP on 0.0.0.0,
# take RTP from anyone and join any multicast group the file names.
RTSP_ONLY_PROTOCOLS = ("rtp", "srtp", "udp")
RTSP_ONLY_FORMATS = ("rtsp", "sdp", "rtp")
MAX_REDIRECTS = 5


class TargetRefused(InvalidCameraURL):
    """The URL (or a hop it redirects to) points outside the camera-target policy; `setting` governs it."""

    def __init__(self, url: str, reason: str, setting: str = ALLOW_NETS_SETTING) -> None:
        super().__init__(url, reason)
        self.setting = setting


def parse_nets(nets: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings -> networks; ValueError naming the one that does not parse."""
    out = []
    for text in nets:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{ALLOW_NETS_SETTING}: {text!r} is not a CIDR network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(out)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (blocking: call it off the event loop)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class TargetPolicy:
    """The networks cameras may live in. `check` refuses anything else, naming `setting`."""

    allow_nets: tuple[Network, ...] = parse_nets(DEFAULT_ALLOW_NETS)
    setting: str = ALLOW_NETS_SETTING

    @classmethod
    def from_cidrs(cls, nets: Iterable[str]) -> TargetPolicy:
        return cls(parse_nets(nets))

    def refusal(self, address: str) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in ALWAYS_REFUSED):
            return f"{ip} is a link-local, metadata, multicast or unspecified address: never a camera"
        if not any(ip in net for net in self.allow_nets):
            nets = ", ".join(map(str, self.allow_nets)) or "none"
            return f"{ip} is outside the camera networks {self.setting} allows ({nets})"
        return None

    def check(self, url: str, resolve: Resolver = system_resolver) -> None:
        """Refuse `url` unless every address its host resolves to is allowed. A name that does not resolve
        passes (the camera may come later; the connection is checked again then).

        Raises:
            TargetRefused: with the redacted URL and the rule it breaks.
        """
        host, port = host_and_port(url)
        try:
            addresses = [host] if _is_ip(host) else list(resolve(host, port))
        except OSError:
            return
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise TargetRefused(redact(url), reason, self.setting)


def ffmpeg_guard_options(
    *, local: bool, tls_verify: bool, ca_file: str | None, hls: bool = False, rtsp: bool = True
) -> dict[str, str]:
    """FFmpeg options that hold it to the policy: protocol and demuxer whitelists (the HLS demuxer only for a
    target known to be a playlist, whose nested opens then go through `streamer.fetch`; SDP, RTP and UDP only
    for an `rtsp` target), no redirects of its own, and certificate verification (against `ca_file`, or the
    system's CAs) unless `tls_verify` is False."""
    protocols: tuple[str, ...] = ("file",) if local else NETWORK_PROTOCOLS
    formats = CAMERA_FORMATS if hls else tuple(f for f in CAMERA_FORMATS if f not in HLS_FORMATS)
    if not rtsp:
        protocols = tuple(p for p in protocols if p not in RTSP_ONLY_PROTOCOLS)
        formats = tuple(f for f in formats if f not in RTSP_ONLY_FORMATS)
    options = {"protocol_whitelist": ",".join(protocols), "format_whitelist": ",".join(formats)}
    if not local:
        options["max_redirects"] = "0"
        options["tls_verify"] = "1" if tls_verify else "0"
        if tls_verify and ca_file:
            options["ca_file"] = ca_file
    return options


def default_ca_file() -> str | None:
    """The system's CA bundle (Debian's, else OpenSSL's default), or certifi's; None if none is found."""
    import ssl
    from pathlib import Path

    paths = ssl.get_default_verify_paths()
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
