"""Camera URL validation and credential redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamer
from streamer import InvalidCameraURL, redact, validate_url


def test_redact_hides_user_and_password_in_an_rtsp_url() -> None:
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/stream1") == "rtsp://***:***@10.0.0.5:554/stream1"


def test_redact_hides_a_password_that_contains_an_unescaped_at_sign() -> None:
    out = redact("rtsp://admin:p@ss@10.0.0.5/cam")
    assert "ss@" not in out and "p@" not in out and out.endswith("@10.0.0.5/cam")


def test_redact_hides_secret_query_parameters_but_keeps_the_others() -> None:
    out = redact("http://cam.local/video.cgi?user=admin&password=hunter2&channel=1&token=abc")
    assert "hunter2" not in out and "abc" not in out
    assert "channel=1" in out and "password=***" in out


def test_redact_finds_urls_inside_ffmpeg_error_messages() -> None:
    msg = "HTTPUnauthorizedError(825242872, 'Server returned 401', 'rtsp://alice:wrong@127.0.0.1:8554/cam')"
    assert "wrong" not in redact(msg) and "alice" not in redact(msg)


@pytest.mark.parametrize(
    "secret",
    ["it's'quoted", 'say"cheese', "sl/ash/es", "ha#sh?q", "a@b@c"],
)
def test_redact_hides_passwords_with_quotes_slashes_and_at_signs_in_urls_and_in_free_text(
    secret: str,
) -> None:
    url = f"rtsp://admin:{secret}@10.0.0.5/cam"
    for text in (url, f"Server returned 401 for '{url}'", f'{{"url": "{url}"}}'):
        assert secret not in redact(text) and "admin" not in redact(text)


@pytest.mark.parametrize("param", ["pw", "loginpas", "PassWord", "psw", "client_secret"])
def test_redact_hides_every_documented_secret_query_parameter(param: str) -> None:
    out = redact(f"http://cam.local/snap.cgi?{param}=x'y\"z&chn=1")
    assert "x'y" not in out and 'y"z' not in out and out.endswith("&chn=1")


def test_redact_leaves_text_without_credentials_unchanged() -> None:
    for text in ("rtsp://10.0.0.5/cam", "/videos/a@b.mp4", "connection refused", "http://h/p?x=1"):
        assert redact(text) == text


@given(
    user=st.text(
        st.characters(blacklist_characters="/\\ \t\r\n'\"#?@", min_codepoint=33, max_codepoint=126),
        min_size=1,
        max_size=12,
    ),
    password=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=24),
)
def test_redact_never_leaves_the_password_in_a_url(user: str, password: str) -> None:
    url = f"rtsp://{user}:{password}@camera.local:554/live"
    assert password not in redact(url).replace("***", "")


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5/cam",
        "rtsps://cam.example:322/s",
        "http://cam/video.mjpg",
        "https://cdn.example/live.m3u8",
        "rtsp://u:p@[::1]:8554/x",
    ],
)
def test_validate_url_accepts_network_camera_urls_unchanged(url: str) -> None:
    assert validate_url(url) == url


def test_validate_url_accepts_existing_files_as_paths_or_file_urls(videos: Path) -> None:
    path = videos / "bikes.mp4"
    assert validate_url(str(path)) == str(path)
    assert validate_url(path.as_uri()) == str(path)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://cam/x.mp4", "unsupported scheme"),
        ("udp://239.0.0.1:1234", "unsupported scheme"),
        ("rtsp:///nohost", "missing host"),
        ("rtsp://cam:99999/x", "port"),
        ("", "empty"),
        (" rtsp://cam/x", "whitespace"),
        ("/no/such/video.mp4", "no such file"),
        ("file://otherhost/video.mp4", "local path"),
    ],
)
def test_validate_url_rejects_bad_urls_with_a_clear_reason(url: str, words: str) -> None:
    with pytest.raises(InvalidCameraURL, match=words):
        validate_url(url)


def test_validate_url_refuses_local_files_when_files_are_not_allowed(videos: Path) -> None:
    with pytest.raises(InvalidCameraURL, match="not allowed"):
        validate_url(str(videos / "bikes.mp4"), allow_files=False)


def test_a_rejected_url_error_never_contains_the_password() -> None:
    with pytest.raises(InvalidCameraURL) as info:
        validate_url("ftp://admin:hunter2@cam/x")
    assert "hunter2" not in str(info.value) and "hunter2" not in info.value.url


def test_open_source_rejects_a_bad_url_before_any_connection_or_event_loop() -> None:
    # Called outside any event loop: validation is synchronous, nothing is started.
    with pytest.raises(InvalidCameraURL, match="unsupported scheme"):
        streamer.open_source("gopher://cam/x", camera_id="c", fps=1)


@pytest.mark.parametrize(
    "options",
    [
        {"fps": -1},
        {"transport": "sctp"},
        {"queue_size": 0},
        {"read_timeout_s": 0},
        {"width": 1},
        {"size": (64, 48), "width": 64},
    ],
)
def test_open_source_rejects_out_of_range_options(options: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"fps": 1} | options
    with pytest.raises(ValueError):
        streamer.open_source("rtsp://10.0.0.5/cam", camera_id="c", **kwargs)  # type: ignore[arg-type]


def test_loop_is_refused_for_live_cameras() -> None:
    with pytest.raises(ValueError, match="local files only"):
        streamer.open_source("rtsp://10.0.0.5/cam", camera_id="c", fps=1, loop=True)
