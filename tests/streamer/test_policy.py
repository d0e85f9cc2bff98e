"""The camera-target policy against real servers on loopback: no reading documents through FFmpeg, TLS
verified, redirects checked hop by hop, refused networks named by their setting."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamer
from streamer import Source, State
from streamer.policy import TargetPolicy, TargetRefused, ffmpeg_guard_options
from tests.streamer.helpers import collect, remux_to_mpegts, serve_http, stop_http, wait_for

LOOPBACK = TargetPolicy.from_cidrs(["127.0.0.1/32"])
SECRET = b'{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}\n' * 20


class Site:
    """A real HTTP(S) server on a loopback address: files, redirects, and a log of the paths asked for."""

    def __init__(self, root: Path, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.hits: list[str] = []
        self.redirects: dict[str, str] = {}
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                site.hits.append(self.path)
                target = site.redirects.get(self.path.split("?")[0])
                if target is not None:
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = serve_http(Handler, host, tls)
        self.base = f"{'https' if tls else 'http'}://{host}:{self.server.server_address[1]}"

    def close(self) -> None:
        stop_http(self.server)


@pytest.fixture
def root(tmp_path: Path, videos: Path) -> Path:
    (tmp_path / "creds").write_bytes(SECRET)
    remux_to_mpegts(videos / "bikes.mp4", tmp_path / "bikes.ts")
    return tmp_path


@pytest.fixture
def site(root: Path) -> Iterator[Site]:
    server = Site(root)
    yield server
    server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (an impostor camera's, or a LAN camera's own)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def first_frame_or_status(source: Source) -> tuple[int, State, str, str]:
    """(frames seen within a few seconds, state, reason code, reason) of a source that may never give a
    frame, read before it closes."""
    async with source as src:
        try:
            frames = await collect(src, count=1, timeout_s=6.0)
        except TimeoutError:
            frames = []
        if not frames:
            await wait_for(lambda: src.status.state != State.CONNECTING, 6.0, "a status")
        return len(frames), src.status.state, src.status.code, src.status.reason


@pytest.mark.parametrize("suffix", ["?.ans", "?.nfo", "?a=b.diz"])
async def test_a_text_document_is_never_rendered_into_frames(site: Site, suffix: str) -> None:
    url = f"{site.base}/creds{suffix}"
    source = streamer.open_source(url, camera_id="doc", fps=1, policy=LOOPBACK)
    frames, state, code, _ = await first_frame_or_status(source)
    assert frames == 0, "FFmpeg's tty demuxer rendered the document as video"
    assert state in (State.DOWN, State.STOPPED) and code in ("invalid_data", "unsupported", "io_error")
    assert site.hits, "the server was asked (the refusal is FFmpeg's demuxer whitelist, not a failed fetch)"


async def test_the_guards_win_over_ffmpeg_options_a_caller_passes(site: Site) -> None:
    source = streamer.open_source(
        f"{site.base}/creds?.ans", camera_id="doc", fps=1, ffmpeg_options={"format_whitelist": "tty"}
    )
    frames, *_ = await first_frame_or_status(source)
    assert frames == 0


async def test_a_real_video_over_http_still_plays(site: Site) -> None:
    source = streamer.open_source(f"{site.base}/bikes.ts", camera_id="ok", fps=1, policy=LOOPBACK)
    frames, state, *_ = await first_frame_or_status(source)
    assert frames == 1 and state == State.UP


async def test_a_redirect_out_of_the_allowed_networks_is_refused_before_anyone_connects(
    site: Site, root: Path
) -> None:
    elsewhere = Site(root, host="127.0.0.2")  # loopback too, but outside the policy's 127.0.0.1/32
    try:
        site.redirects["/cam"] = f"{elsewhere.base}/bikes.ts"
        source = streamer.open_source(f"{site.base}/cam", camera_id="r", fps=1, policy=LOOPBACK)
        frames, state, code, reason = await first_frame_or_status(source)
        assert (frames, state, code) == (0, State.DOWN, "unreachable")
        assert reason == "camera unreachable (outside the camera-target policy)"  # nothing of what is there
        assert elsewhere.hits == [], "nothing may reach a host outside the policy"
    finally:
        elsewhere.close()


async def test_an_sdp_file_over_http_is_refused_so_no_rtp_socket_is_opened(site: Site, root: Path) -> None:
    """An SDP file makes FFmpeg bind RTCP on 0.0.0.0 and take RTP from anyone (or join a multicast group)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    (root / "cam.sdp").write_text(
        f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )
    source = streamer.open_source(f"{site.base}/cam.sdp", camera_id="sdp", fps=1, policy=LOOPBACK)
    async with source as src:
        await wait_for(lambda: src.status.state != State.CONNECTING, 10.0, "a status")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))  # FFmpeg's RTP socket would hold this port (on 0.0.0.0)
        finally:
            probe.close()
        assert src.status.state in (State.DOWN, State.STOPPED)
    assert "/cam.sdp" in site.hits


async def test_a_redirect_inside_the_policy_is_followed_hop_by_hop(site: Site) -> None:
    site.redirects["/a"] = "/b"
    site.redirects["/b"] = f"{site.base}/bikes.ts"
    source = streamer.open_source(f"{site.base}/a", camera_id="r", fps=1, policy=LOOPBACK)
    frames, *_ = await first_frame_or_status(source)
    assert frames == 1 and site.hits[:2] == ["/a", "/b"]


def playlist(*segments: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10", "#EXT-X-MEDIA-SEQUENCE:0"]
    for segment in segments:
        lines += ["#EXTINF:10.0,", segment]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


async def test_an_hls_camera_plays_with_every_playlist_entry_fetched_on_the_policys_terms(
    site: Site, root: Path
) -> None:
    (root / "live.m3u8").write_bytes(playlist("bikes.ts"))
    source = streamer.open_source(f"{site.base}/live.m3u8", camera_id="hls", fps=1, policy=LOOPBACK)
    frames, state, *_ = await first_frame_or_status(source)
    assert frames == 1 and state == State.UP
    assert "/bikes.ts" in site.hits


async def test_an_hls_entry_on_a_host_outside_the_policy_is_never_fetched(site: Site, root: Path) -> None:
    elsewhere = Site(root, host="127.0.0.2")
    try:
        (root / "live.m3u8").write_bytes(playlist(f"{elsewhere.base}/bikes.ts"))
        source = streamer.open_source(f"{site.base}/live.m3u8", camera_id="hls", fps=1, policy=LOOPBACK)
        frames, *_ = await first_frame_or_status(source)
        assert frames == 0
        assert elsewhere.hits == [], "a playlist entry reached a host outside the policy"
    finally:
        elsewhere.close()


async def test_a_playlist_behind_a_plain_url_is_not_demuxed_as_hls_by_ffmpeg_itself(
    site: Site, root: Path
) -> None:
    """FFmpeg's own HLS demuxer would fetch entries past every check: it is only allowed for targets we
    recognised as playlists, whose entries we fetch ourselves."""
    elsewhere = Site(root, host="127.0.0.2")
    try:
        (root / "plain").write_bytes(playlist(f"{elsewhere.base}/bikes.ts"))
        source = streamer.open_source(f"{site.base}/plain", camera_id="hls", fps=1, policy=LOOPBACK)
        frames, *_ = await first_frame_or_status(source)
        assert frames == 0 and elsewhere.hits == []
    finally:
        elsewhere.close()


async def test_tls_is_verified_by_default_and_the_opt_out_is_explicit(
    root: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    impostor = Site(root, tls=context)
    try:
        url = f"https://user:hunter2@{impostor.base.removeprefix('https://')}/bikes.ts"
        refused = await first_frame_or_status(streamer.open_source(url, camera_id="t", fps=1))
        assert refused[0] == 0, "an unverified certificate was accepted"
        assert impostor.hits == [], "no HTTP request (and no credentials) after a failed handshake"
        trusted = streamer.open_source(url, camera_id="t", fps=1, ca_file=str(cert))
        assert (await first_frame_or_status(trusted))[0] == 1
        opted_out = streamer.open_source(url, camera_id="t", fps=1, insecure_tls=True)
        assert (await first_frame_or_status(opted_out))[0] == 1
    finally:
        impostor.close()


def test_a_refused_network_is_an_invalid_url_naming_the_setting() -> None:
    with pytest.raises(TargetRefused, match="SCISSOR_CAMERA__ALLOW_NETS") as refused:
        streamer.open_source("rtsp://127.0.0.1:8554/cam", camera_id="c", fps=1, policy=TargetPolicy())
    assert isinstance(refused.value, streamer.InvalidCameraURL)
    assert refused.value.setting == "SCISSOR_CAMERA__ALLOW_NETS"


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "fd00:ec2::254", "0.0.0.0", "224.0.0.1"],
)
def test_link_local_and_metadata_addresses_are_refused_even_when_everything_is_allowed(address: str) -> None:
    everything = TargetPolicy.from_cidrs(["0.0.0.0/0", "::/0"])
    reason = everything.refusal(address)
    assert reason is not None and "never a camera" in reason


def test_the_default_suits_a_camera_lan_and_not_this_machine() -> None:
    policy = TargetPolicy()
    assert all(policy.refusal(a) is None for a in ("10.1.2.3", "172.20.0.5", "192.168.1.64", "fd12::5"))
    assert all(policy.refusal(a) is not None for a in ("127.0.0.1", "::1", "8.8.8.8"))


def test_host_names_are_checked_by_every_address_they_resolve_to() -> None:
    policy = TargetPolicy()
    policy.check("rtsp://cam.lan/s", resolve=lambda host, port: ["192.168.1.9"])
    with pytest.raises(TargetRefused, match=r"169\.254\.169\.254"):
        policy.check("rtsp://cam.lan/s", resolve=lambda host, port: ["192.168.1.9", "169.254.169.254"])

    def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    policy.check("rtsp://later.lan/s", resolve=unresolvable)  # checked again at every connection


def test_bad_cidrs_name_the_setting() -> None:
    with pytest.raises(ValueError, match="SCISSOR_CAMERA__ALLOW_NETS: 'ten' is not a CIDR"):
        TargetPolicy.from_cidrs(["ten"])


def test_the_guard_options_name_no_text_or_file_demuxer() -> None:
    network = ffmpeg_guard_options(local=False, tls_verify=True, ca_file="/ca.pem")
    formats, protocols = network["format_whitelist"].split(","), network["protocol_whitelist"].split(",")
    assert "tty" not in formats and "file" not in protocols and "concat" not in formats
    assert (
        network["tls_verify"] == "1" and network["ca_file"] == "/ca.pem" and network["max_redirects"] == "0"
    )
    assert ffmpeg_guard_options(local=True, tls_verify=True, ca_file=None)["protocol_whitelist"] == "file"
    http = ffmpeg_guard_options(local=False, tls_verify=True, ca_file=None, rtsp=False)
    assert not {"sdp", "rtp", "rtsp"} & set(http["format_whitelist"].split(","))
    assert not {"udp", "rtp", "srtp"} & set(http["protocol_whitelist"].split(","))
