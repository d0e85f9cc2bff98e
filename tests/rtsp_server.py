"""Real RTSP server for tests: GStreamer rtsp-server looping an H.264 mp4; run only under Debian's /usr/bin/python3.

Never imported by the project (its `gi` lives in the system Python); tests start it through tests/rtsp.py.
Usage: /usr/bin/python3 tests/rtsp_server.py VIDEO.mp4 --port N [--mount /cam] [--user U --password P]
Prints `READY rtsp://127.0.0.1:N/cam` (flushed) once it listens.

The file is demuxed by `filesrc ! qtdemux ! h264parse` in a reader pipeline this script owns, and its access
units are fed to the served media (`appsrc ! h264parse ! rtph264pay`), with timestamps shifted by one file
duration on each pass. That is how it loops with timestamps that only increase (a seek inside the served
pipeline would restart them). The media is shared, like a real camera: late clients join mid-stream.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


class LoopingFeeder:
    """Reads access units from the mp4 and pushes them into one served media's appsrc, looping forever."""

    def __init__(self, path: str, appsrc: Gst.Element) -> None:
        self.reader = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! {CAPS} '
            "! appsink name=out sync=false max-buffers=32"
        )
        self.sink = self.reader.get_by_name("out")
        self.appsrc = appsrc
        self.offset = 0  # ns added to every timestamp on the current pass
        self.pass_end = 0  # the largest end time seen on the current pass
        self.reader.set_state(Gst.State.PLAYING)
        appsrc.connect("need-data", self.on_need_data)

    def next_sample(self) -> Gst.Sample | None:
        sample = self.sink.emit("try-pull-sample", 2 * Gst.SECOND)
        if sample is not None:
            return sample
        if not self.sink.get_property("eos"):
            return None
        # End of file: rewind the reader and shift the next pass after everything already sent.
        self.offset, self.pass_end = self.pass_end, self.pass_end
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


def add_auth(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, user: str, password: str) -> None:
    """Require HTTP basic auth: only `user`/`password` may see and play the mount."""
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
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( appsrc name=src is-live=false format=time caps={CAPS} ! h264parse "
                       "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    feeders: list[LoopingFeeder] = []

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        feeder = LoopingFeeder(args.video, media.get_element().get_by_name("src"))
        feeders.append(feeder)
        media.connect("unprepared", lambda _m: feeder.stop())

    factory.connect("media-configure", on_configure)
    if args.user:
        add_auth(server, factory, args.user, args.password or "")
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"FAILED to listen on port {args.port}", flush=True)
        return 1
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
