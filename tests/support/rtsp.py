"""A real RTSP server the recorder's tests start, kill and start again on the same port (GStreamer's,
through tests/support/rtsp_server.py under the system Python, which has `gi`)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.support.netns import Host
from tests.support.services import free_port, missing_service

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("rtsp_server.py")


def require_gstreamer() -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        missing_service(
            "GStreamer's RTSP server (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi "
            f"gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad): {probe.stderr.strip()[-200:]}"
        )


class RtspServer:
    """Serves a live 320x240 test picture at 10 fps, a keyframe every `gop` frames, at `url`; with a tone
    as well if `audio` ("aac", "pcmu"); a videotestsrc `pattern` other than the ball ("snow": every frame
    as big as the bitrate allows, several RTP packets); on a test host of tests/support/netns.py if
    `host` is given."""

    def __init__(
        self,
        log: Path,
        *,
        codec: str = "h264",
        gop: int = 10,
        user: str = "",
        password: str = "",
        resize_after: int = 0,
        audio: str = "",
        pattern: str = "ball",
        host: Host | None = None,
    ):
        self.port = free_port()
        self.address = host.address if host is not None else "127.0.0.1"
        self.url = f"rtsp://{self.address}:{self.port}/cam"
        self.log, self.codec, self.gop, self.user, self.password = log, codec, gop, user, password
        self.resize_after, self.audio, self.pattern, self.host = resize_after, audio, pattern, host
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--codec", self.codec]
        argv += ["--gop", str(self.gop), "--resize-after", str(self.resize_after), "--address", self.address]
        argv += ["--pattern", self.pattern]
        if self.user:
            argv += ["--user", self.user, "--password", self.password]
        if self.audio:
            argv += ["--audio", self.audio]
        if self.host is not None:
            argv = self.host.argv(*argv)
        with self.log.open("a") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready …" once it listens
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"the RTSP server did not start (see {self.log})")

    def kill(self) -> None:
        """SIGKILL: the camera's power cut, no goodbye on the connection."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the camera hangs with its connections open; no packet, no close."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop_media(self) -> None:
        """The camera keeps its sessions and answers RTSP requests, but sends no picture (SIGUSR1)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def start_media(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)

    def restart(self, *, after_s: float) -> None:
        self.kill()
        time.sleep(after_s)
        self.start()
