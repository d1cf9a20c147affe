"""A live HLS source the recorder's tests start: GStreamer's hlssink2 writing a growing playlist of H.264
segments (tests/support/hls_writer.py, under the system Python) into a folder, and a real HTTP server
(Python's http.server, in its own process so that it can be killed and started again on the same port)
serving that folder, as an encoder publishing to a web server does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.netservers import wait_port
from tests.support.rtsp import SYSTEM_PYTHON, require_gstreamer
from tests.support.services import free_port

WRITER = Path(__file__).with_name("hls_writer.py")


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
