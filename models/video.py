"""Video through FFmpeg (PyAV; FFmpeg ships inside its wheel): frames sampled by time and by
scene change, each a still image at the size the model needs.

A frame is kept every ``interval`` seconds, and at every scene change (the mean absolute
difference of two successive 64x36 grey thumbnails above ``scene_threshold``, no closer
than ``min_gap`` to the last kept frame). Everything is bounded: the codec must be one of
CODECS, the frame size (from the header) within the pixel limit (FFmpeg's own ``max_pixels``
too), at most ``max_frames`` kept, at most ``max_seconds`` of video decoded, and at most
``deadline`` seconds of wall time spent. A video that cannot be decoded to its end (cut
short, corrupt) is refused with the time it failed at, not taken in part.
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

CODECS = {"h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4", "mjpeg", "prores", "mpeg2video"}
"""What phones, cameras and the web write; FFmpeg's hundreds of other decoders stay unused."""
THUMB = (64, 36)
CUT_SHORT = 0.5
"""Seconds before its declared end that a video may stop decoding (or three frames, when longer)."""


@dataclass(frozen=True)
class VideoLimits:
    max_pixels: int = 60_000_000
    max_frames: int = 64
    interval: float = 2.0
    max_seconds: float = 600.0
    deadline: float = 120.0
    scene_threshold: float = 30.0
    min_gap: float = 0.5


@dataclass
class SampledVideo:
    width: int
    height: int
    duration: float
    """Seconds of video (as decoded, up to max_seconds)."""
    frames: list[tuple[float, "Image"]] = field(default_factory=list)
    """(time in seconds, the frame as an RGB image at the size asked for), in time order."""
    truncated_at: float | None = None
    """Set when max_seconds, max_frames or the deadline ended the sampling early."""


class VideoError(ValueError):
    """A video that cannot be used; the message says why (models.images.ImageError wraps it)."""


def frame_id(video_id: str, seconds: float) -> str:
    """A frame's id in Media Fragments form: ``<video id>#t=<seconds>``."""
    return f"{video_id}#t={seconds:.3f}"


def parse_frame_id(image_id: str) -> tuple[str, float] | None:
    """(video id, seconds) of a frame's id, or None for any other id."""
    video_id, mark, seconds = image_id.rpartition("#t=")
    try:
        return (video_id, float(seconds)) if mark and video_id else None
    except ValueError:
        return None


def sample(data: bytes, limits: VideoLimits = VideoLimits(), at_least: int = 448) -> SampledVideo:
    """The frames to embed of the video in ``data``; VideoError saying why when it cannot be used."""
    with _opened(data, limits) as (container, stream):
        context = stream.codec_context
        return _sample_stream(container, stream, context.width, context.height, limits, at_least)


def frame_at(data: bytes, seconds: float, limits: VideoLimits = VideoLimits(), size: int = 160) -> "Image":
    """The frame shown at ``seconds`` (the first decoded at or after it), within ``size`` pixels:
    a thumbnail for pages. Bounded like ``sample``: codec, pixels, and ``limits.max_frames``
    frames decoded after the seek."""
    with _opened(data, limits) as (container, stream):
        try:
            if seconds > 0 and stream.time_base:
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
            for index, frame in enumerate(container.decode(stream)):
                if (frame.time or 0.0) + 1e-3 >= seconds or index >= limits.max_frames:
                    image = frame.to_image()
                    image.thumbnail((size, size))
                    return image
        except Exception as err:
            raise VideoError(f"cannot decode the frame at {seconds:.1f} s: {_short(err)}") from None
    raise VideoError(f"no frame at {seconds:.1f} s")


@contextmanager
def _opened(data: bytes, limits: VideoLimits):
    """The container and its first video stream, once codec and frame size are within bounds."""
    import av

    try:
        container = av.open(io.BytesIO(data), options={"probesize": "10000000", "analyzeduration": "10000000",
                                                       "max_pixels": str(limits.max_pixels)})
    except Exception as err:  # FFmpeg's own classes: InvalidDataError, ...
        raise VideoError(f"cannot open the video: {_short(err)}") from None
    with container:
        if not container.streams.video:
            raise VideoError("no video stream in the file")
        stream = container.streams.video[0]
        context = stream.codec_context
        if context.name not in CODECS:
            raise VideoError(f"codec {context.name!r} is not one columnist decodes ({', '.join(sorted(CODECS))})")
        width, height = context.width, context.height
        if width <= 0 or height <= 0:
            raise VideoError(f"the frame size cannot be read ({width}x{height}): the file is broken, or its frames are "
                             f"over the limit of {limits.max_pixels:,} pixels")
        if width * height > limits.max_pixels:
            raise VideoError(f"refused before decoding: {width}x{height} frames are {width * height:,} pixels, over "
                             f"the limit of {limits.max_pixels:,}")
        context.options = {"max_pixels": str(limits.max_pixels)}
        stream.thread_type = "AUTO"
        yield container, stream


def _sample_stream(container, stream, width: int, height: int, limits: VideoLimits, at_least: int) -> SampledVideo:
    import numpy as np

    out = SampledVideo(width, height, 0.0)
    scale = max(1.0, min(width, height) / at_least) if at_least else 1.0
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    started, last_kept, previous = time.monotonic(), None, None
    seconds = 0.0
    rate = float(stream.average_rate or 25)
    try:
        for index, frame in enumerate(container.decode(stream)):
            seconds = float(frame.time) if frame.time is not None else index / rate
            if seconds > limits.max_seconds:
                out.truncated_at = limits.max_seconds
                break
            thumb = frame.to_ndarray(width=THUMB[0], height=THUMB[1], format="gray").astype(np.int16)
            cut = previous is not None and float(np.abs(thumb - previous).mean()) > limits.scene_threshold
            previous = thumb
            due = last_kept is None or seconds - last_kept >= limits.interval
            if due or (cut and seconds - last_kept >= limits.min_gap):
                out.frames.append((round(seconds, 3), frame.to_image(width=size[0], height=size[1])))
                last_kept = seconds
                if len(out.frames) >= limits.max_frames:
                    out.truncated_at = seconds
                    break
            if time.monotonic() - started > limits.deadline:
                out.truncated_at = seconds
                break
    except Exception as err:
        raise VideoError(f"cannot decode the video at {seconds:.1f} s (cut short or corrupt): {_short(err)}") from None
    if not out.frames:
        raise VideoError("no frame could be decoded")
    duration = _duration(container, stream)
    slack = max(CUT_SHORT, 3 / rate)
    if out.truncated_at is None and duration and seconds < min(duration, limits.max_seconds) - slack:
        raise VideoError(f"cut short: frames decode up to {seconds:.1f} s of the {duration:.1f} s its header declares")
    out.duration = round(min(duration, limits.max_seconds) if duration else seconds, 3)
    return out


def _duration(container, stream) -> float:
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _short(err: Exception) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]
