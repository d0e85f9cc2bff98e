"""Sample RTSP camera for the compose stack: serves an H.264 mp4 at rtsp://0.0.0.0:8554/cam, looping.

Never transcodes.

Runs under the system Python with GStreamer's introspection bindings (python3-gi, gir1.2-gst-rtsp-server-1.0).
Usage: python3 rtsp_camera.py [VIDEO.mp4] [--host 0.0.0.0] [--port 8554] [--mount /cam]
Env: CAMERA_VIDEO (default /videos/sample.mp4), CAMERA_USER / CAMERA_PASSWORD (optional basic auth).
Prints `READY rtsp://HOST:PORT/MOUNT` once it listens.

How it loops (tests and benchmarks run this same script through harness/rtsp.py): a reader pipeline demuxes
the file into access units that are pushed into the served media's appsrc, with timestamps shifted by one file
duration on every pass, so clients see one endless stream whose timestamps only increase. The media is shared,
like a real camera: late clients join mid-stream.
"""

from __future__ import annotations

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


class LoopingFeeder:
    """Reads access units from the mp4 and pushes them into one served media's appsrc, forever."""

    def __init__(self, path: str, appsrc: Gst.Element) -> None:
        self.reader = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! {CAPS} '
            "! appsink name=out sync=false max-buffers=32"
        )
        self.sink = self.reader.get_by_name("out")
        self.offset = 0  # ns added to every timestamp of the current pass
        self.pass_end = 0  # largest end time pushed so far
        self.reader.set_state(Gst.State.PLAYING)
        appsrc.connect("need-data", self.on_need_data)

    def next_sample(self) -> Gst.Sample | None:
        sample = self.sink.emit("try-pull-sample", 2 * Gst.SECOND)
        if sample is not None or not self.sink.get_property("eos"):
            return sample
        # End of file: rewind, and start the next pass after everything already sent.
        self.offset = self.pass_end
        self.reader.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        return self.sink.emit("try-pull-sample", 2 * Gst.SECOND)

    def on_need_data(self, appsrc: Gst.Element, _length: int) -> None:
        sample = self.next_sample()
        if sample is None:
            appsrc.emit("end-of-stream")
            return
        src = sample.get_buffer()
        buf = src.copy_deep()
        duration = src.duration if src.duration != Gst.CLOCK_TIME_NONE else Gst.SECOND // 25
        buf.pts = src.pts + self.offset
        buf.dts = (src.dts + self.offset) if src.dts != Gst.CLOCK_TIME_NONE else buf.pts
        self.pass_end = max(self.pass_end, buf.pts + duration)
        appsrc.emit("push-buffer", buf)

    def stop(self) -> None:
        self.reader.set_state(Gst.State.NULL)


def require_basic_auth(
    server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, user: str, password: str
) -> None:
    """Only `user`/`password` may see and play the mount."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    role = Gst.Structure.from_string(
        "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    )[0]
    factory.add_role_from_structure(role)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=os.environ.get("CAMERA_VIDEO", "/videos/sample.mp4"))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", default="/cam")
    args = parser.parse_args()
    if not os.path.isfile(args.video):
        print(f"no such video: {args.video}", file=sys.stderr)
        return 2
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=false format=time caps={CAPS} ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    feeders: list[LoopingFeeder] = []

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        feeder = LoopingFeeder(args.video, media.get_element().get_by_name("src"))
        feeders.append(feeder)
        media.connect("unprepared", lambda _m: feeder.stop())

    factory.connect("media-configure", on_configure)
    user, password = os.environ.get("CAMERA_USER"), os.environ.get("CAMERA_PASSWORD")
    if user:
        require_basic_auth(server, factory, user, password or "")
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"FAILED to listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"READY rtsp://{args.host}:{args.port}{args.mount}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
