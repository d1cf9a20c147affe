"""A real RTSP server for the recorder's tests: GStreamer's (Debian: gir1.2-gst-rtsp-server-1.0), serving
a live test picture encoded by x264enc (or x265enc) at a fixed keyframe interval, optionally with a sine
tone as a second stream (AAC, or G.711 mu-law as many cameras send), optionally behind HTTP Basic
authentication. Runs under the system Python, which has `gi`:

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 [--codec h265] [--audio aac|pcmu]
        [--user U --password P] [--address 127.0.0.1]

Prints "ready rtsp://ADDRESS:PORT/PATH" once it listens, then serves until killed. SIGUSR1 stops the media
(a `valve` before the encoders drops every picture and sample; sessions stay up and RTSP requests are still
answered, as a camera whose sensor pipeline stalled), SIGUSR2 lets it flow again.
"""

from __future__ import annotations

import argparse
import signal
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
AUDIO = {
    "aac": "audio/x-raw,rate=16000,channels=1 ! voaacenc bitrate=32000 ! rtpmp4gpay name=pay1 pt=97",
    "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--gop", type=int, default=10, help="frames between keyframes")
    parser.add_argument("--audio", choices=sorted(AUDIO))
    parser.add_argument("--pattern", default="ball", help="videotestsrc's: snow makes every frame big")
    parser.add_argument("--resize-after", type=int, default=0, help="seconds, then twice the size")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    width, height = args.size.split("x")
    launch = (
        f"( videotestsrc is-live=true pattern={args.pattern} ! valve name=flow0 ! videoscale "
        f"! capsfilter name=size caps=video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        f"! {ENCODERS[args.codec].format(gop=args.gop)} "
    )
    if args.audio:
        launch += (
            "audiotestsrc is-live=true wave=sine ! valve name=flow1 ! audioconvert ! audioresample "
            f"! {AUDIO[args.audio]} "
        )
    launch += ")"
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
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
    valves = media_valves(factory)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, valves, False)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, valves, True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"ready rtsp://{args.address}:{args.port}{args.path}", flush=True)
    GLib.MainLoop().run()
    return 0


def media_valves(factory: GstRtspServer.RTSPMediaFactory):  # type: ignore[no-untyped-def]
    """The SIGUSR1/SIGUSR2 handler: close (False) or open (True) the valves of every media made so far,
    and of those made later (a client that connects while the media is stopped gets no media either)."""
    state = {"flowing": True}
    medias: list[GstRtspServer.RTSPMedia] = []

    def apply(media: GstRtspServer.RTSPMedia) -> None:
        for n in (0, 1):
            valve = media.get_element().get_by_name(f"flow{n}")
            if valve is not None:
                valve.set_property("drop", not state["flowing"])

    def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
        medias.append(media)
        apply(media)

    def toggle(flowing: bool) -> bool:
        state["flowing"] = flowing
        for media in medias:
            apply(media)
        print("media " + ("flowing" if flowing else "stopped"), file=sys.stderr, flush=True)
        return True  # keep the handler

    factory.connect("media-configure", configure)
    return toggle


if __name__ == "__main__":
    sys.exit(main())
