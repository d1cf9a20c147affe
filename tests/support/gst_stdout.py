"""A live camera stream written to standard output, for an HTTP server to send as it comes (as cheap
encoders serve `/video.ts` or `/video.mjpg`): H.264 in MPEG-TS (x264enc, a keyframe every second), or
Motion JPEG as multipart/x-mixed-replace parts (boundary `frame`). Runs under the system Python (`gi`):

    /usr/bin/python3 tests/support/gst_stdout.py ts|mjpeg

Writes until its reader goes away (a broken pipe ends it) or it is killed.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

SOURCE = "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1"
MUXED = {
    "ts": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=400 "
    "! video/x-h264,profile=baseline ! h264parse config-interval=-1 ! mpegtsmux",
    "mjpeg": "jpegenc quality=60 ! multipartmux boundary=frame",
}


def main() -> int:
    Gst.init(None)
    pipeline = Gst.parse_launch(f"{SOURCE} ! {MUXED[sys.argv[1]]} ! fdsink fd=1 sync=false")
    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", lambda *_: loop.quit())  # the reader went away
    pipeline.set_state(Gst.State.PLAYING)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
