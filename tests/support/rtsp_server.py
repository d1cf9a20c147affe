"""A real RTSP server for the recorder's tests: GStreamer's (Debian: gir1.2-gst-rtsp-server-1.0), serving
a live test picture encoded by x264enc (or x265enc) at a fixed keyframe interval, optionally behind HTTP
Basic authentication. Runs under the system Python, which has `gi`:

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 [--codec h265] [--user U --password P]

Prints "ready rtsp://127.0.0.1:PORT/PATH" once it listens, then serves until killed.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=400 "
    "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=400 "
    "! rtph265pay name=pay0 pt=96 config-interval=1",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--gop", type=int, default=10, help="frames between keyframes")
    parser.add_argument("--resize-after", type=int, default=0, help="seconds, then twice the size")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    width, height = args.size.split("x")
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! videoscale ! capsfilter name=size "
        f"caps=video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        f"! {ENCODERS[args.codec].format(gop=args.gop)} )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    if args.resize_after:  # the camera's setting changes once, for good (a new client gets the new size)
        bigger = Gst.Caps.from_string(
            f"video/x-raw,width={int(width) * 2},height={int(height) * 2},framerate={args.fps}/1"
        )
        resized: list[bool] = []

        def resize(size: Gst.Element) -> bool:
            resized.append(True)
            size.set_property("caps", bigger)
            return False

        def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
            size = media.get_element().get_by_name("size")
            if resized:
                size.set_property("caps", bigger)
            else:
                GLib.timeout_add_seconds(args.resize_after, resize, size)

        factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"ready rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
