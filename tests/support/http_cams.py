"""Cameras over HTTP for the recorder's tests.

- `HlsSource`: GStreamer's hlssink2 writing a growing playlist of H.264 segments (tests/support/
  hls_writer.py, under the system Python) into a folder, and a real HTTP server (Python's http.server, in
  its own process so that it can be killed and started again on the same port) serving that folder, as
  an encoder publishing to a web server does.
- `HttpStream`: one endless response per request, as cheap cameras serve `/video.ts` (H.264 in MPEG-TS) or
  `/video.mjpg` (Motion JPEG, multipart/x-mixed-replace): each request gets its own GStreamer encoder
  (tests/support/gst_stdout.py), whose output is sent as it comes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.netservers import wait_port
from tests.support.rtsp import SYSTEM_PYTHON, require_gstreamer
from tests.support.services import free_port

WRITER = Path(__file__).with_name("hls_writer.py")
STDOUT_CAMERA = Path(__file__).with_name("gst_stdout.py")
CONTENT_TYPES = {"ts": "video/mp2t", "mjpeg": "multipart/x-mixed-replace; boundary=frame"}


class HlsSource:
    """`url` is the live playlist; `kill_http()`/`start_http()` take the web server away and back while
    the encoder goes on writing."""

    def __init__(self, folder: Path, log: Path, *, gop: int = 10) -> None:
        require_gstreamer()
        self.folder, self.log, self.gop = folder, log, gop
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.m3u8"
        self.writer: subprocess.Popen[bytes] | None = None
        self.http: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.writer = subprocess.Popen(
                [SYSTEM_PYTHON, str(WRITER), "--folder", str(self.folder), "--gop", str(self.gop)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while len(list(self.folder.glob("*.ts"))) < 3:  # FFmpeg starts 3 segments from the live end
            if time.monotonic() > deadline or self.writer.poll() is not None:
                self.close()
                raise RuntimeError(f"the HLS writer wrote no playlist (see {self.log})")
            time.sleep(0.1)
        self.start_http()

    def start_http(self) -> None:
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(self.folder)]
        with self.log.open("ab") as log:
            self.http = subprocess.Popen([*argv, str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        wait_port("127.0.0.1", self.port, timeout=20)

    def kill_http(self) -> None:
        if self.http is not None:
            self.http.kill()
            self.http.wait(timeout=10)
            self.http = None

    def close(self) -> None:
        self.kill_http()
        if self.writer is not None:
            self.writer.kill()
            self.writer.wait(timeout=10)
            self.writer = None


class HttpStream:
    """Serves a live `kind` ("ts", "mjpeg") stream at `url` until `close()`."""

    def __init__(self, kind: str) -> None:
        require_gstreamer()
        self.kind = kind
        self.encoders: list[subprocess.Popen[bytes]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.{kind}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no length: the body ends when the connection does

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPES[stream.kind])
                self.end_headers()
                encoder = subprocess.Popen(
                    [SYSTEM_PYTHON, str(STDOUT_CAMERA), stream.kind], stdout=subprocess.PIPE
                )
                stream.encoders.append(encoder)
                try:
                    assert encoder.stdout is not None
                    shutil.copyfileobj(encoder.stdout, self.wfile, 4096)
                except OSError:  # the recorder hung up
                    pass
                finally:
                    encoder.kill()
                    encoder.wait(timeout=10)
                    if encoder.stdout is not None:
                        encoder.stdout.close()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for encoder in self.encoders:
            encoder.kill()
            encoder.wait(timeout=10)
