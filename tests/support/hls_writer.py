"""A live HLS camera for the recorder's tests: GStreamer's hlssink2 writes a playlist of H.264 MPEG-TS
segments (x264enc, a keyframe every `gop` frames, one segment a second) into a folder, as an encoder
publishing HLS does; a separate HTTP server serves the folder (tests/support/http_cams.py). Runs under
the system Python, which has `gi`:

    /usr/bin/python3 tests/support/hls_writer.py --folder DIR [--gop 10]

Writes DIR/live.m3u8 (a live playlist: the last 5 segments, no end) and DIR/segNNNNN.ts, until killed.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--gop", type=int, default=10, help="frames between keyframes (10 fps)")
    args = parser.parse_args()
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.gop} bitrate=400 "
        "! video/x-h264,profile=baseline ! h264parse config-interval=-1 "
        f"! hlssink2 location={args.folder}/seg%05d.ts playlist-location={args.folder}/live.m3u8 "
        "target-duration=1 playlist-length=5 max-files=10"
    )
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        print("the HLS pipeline did not start", file=sys.stderr, flush=True)
        return 1
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
