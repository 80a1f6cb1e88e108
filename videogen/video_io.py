"""Video files: probing and windowed decoding (PyAV), writing (mp4 and webm through PyAV, gif
through Pillow), and PNG frame strips.

Files to read are untrusted data. Only regular files are opened, only video demuxers
(`DEMUXERS`: no playlists, image pipes or devices) and only the `file` protocol; the frame
size is checked against a pixel limit from the container header (GIF: its own header)
before any frame is decoded, and the decoder refuses larger frames too. Every refusal is a
`VideoReadError` with a short `reason` (`REASONS`).
"""
import dataclasses
import io
import os
import struct

import av
import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
READABLE_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


# ffmpeg demuxers a video file may use; anything else (png_pipe, hls, concat, …) is refused.
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "gif", "mpegts", "mpeg", "flv",
            "ogg", "asf")
# Frames above this many pixels are refused before decoding (4096²: 4K video fits).
MAX_PIXELS = 4096 * 4096
REASONS = ("missing", "not_a_file", "empty", "not_a_video", "no_video_stream", "too_large",
           "no_frames", "corrupt")


class VideoReadError(ValueError):
  """A file that is not a readable video (missing, empty, corrupt, truncated, too large);
  `reason` is one of `REASONS`."""

  def __init__(self, message: str, reason: str = "corrupt"):
    super().__init__(message)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  num_frames: int
  fps: float
  height: int
  width: int

  @property
  def duration(self) -> float:
    return self.num_frames / self.fps if self.fps else 0.0


def _shown(path: str) -> str:
  """`path` printable as UTF-8 (a name that is not UTF-8 shows its bytes as escapes)."""
  return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _gif_size(path: str) -> tuple[int, int] | None:
  """(height, width) of a GIF's logical screen, read from its first 10 bytes."""
  with open(path, "rb") as f:
    head = f.read(10)
  if head[:6] in (b"GIF87a", b"GIF89a") and len(head) == 10:
    width, height = struct.unpack("<HH", head[6:10])
    return height, width
  return None


def _check_size(path: str, height: int, width: int, max_pixels: int) -> None:
  if height * width > max_pixels:
    raise VideoReadError(f"{path}: frames of {width}x{height} exceed the limit of "
                         f"{max_pixels} pixels", "too_large")


def _open(path: str, max_pixels: int = MAX_PIXELS):
  """An open container with a video stream whose header size is within `max_pixels`."""
  shown = _shown(path)
  if not os.path.lexists(path):
    raise VideoReadError(f"{shown}: no such file", "missing")
  try:
    if not os.path.isfile(path):  # a directory, device, FIFO, dangling or looping link
      raise VideoReadError(f"{shown}: not a regular file", "not_a_file")
    if os.path.getsize(path) == 0:
      raise VideoReadError(f"{shown}: empty file", "empty")
    gif = _gif_size(path)
  except OSError as e:
    raise VideoReadError(f"{shown}: cannot be read ({e.strerror})", "not_a_file") from None
  if gif:
    _check_size(shown, *gif, max_pixels)
  limit = {"max_pixels": str(max_pixels)}
  try:
    container = av.open(path, options=limit, container_options={
        "format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"})
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise VideoReadError(f"{shown}: not a readable video ({e})", "not_a_video") from None
  if not container.streams.video:
    container.close()
    raise VideoReadError(f"{shown}: has no video stream", "no_video_stream")
  context = container.streams.video[0].codec_context
  if context is None:
    container.close()
    raise VideoReadError(f"{shown}: no decoder for its video stream", "not_a_video")
  try:
    _check_size(shown, context.height, context.width, max_pixels)
    if not (gif or context.width):
      raise VideoReadError(f"{shown}: no frame size in its header", "no_frames")
  except VideoReadError:
    container.close()
    raise
  context.options = {**context.options, **limit}  # the decoder refuses larger frames too
  return container


def probe(path: str, max_pixels: int = MAX_PIXELS) -> VideoInfo:
  """Frame count, frame rate and size. Counts frames by demuxing packets (no decoding) when
  the container does not state the count."""
  with _open(path, max_pixels) as container:
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    count = stream.frames
    try:
      if not count:
        count = sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as e:
      raise VideoReadError(f"{_shown(path)}: unreadable stream ({e})") from None
    height, width = stream.codec_context.height, stream.codec_context.width
    if not (height and width):
      height, width = _gif_size(path) or (0, 0)
    if not count or not width:
      raise VideoReadError(f"{_shown(path)}: no frames", "no_frames")
    return VideoInfo(int(count), fps, height, width)


def read_frames(path: str, start: int, count: int, stride: int = 1,
                max_pixels: int = MAX_PIXELS, max_side: int = 0) -> np.ndarray:
  """Frames `start, start + stride, …` (`count` of them) as uint8 `(count, H, W, 3)`;
  `max_side` > 0 scales each frame as it is decoded so its longer side is at most that.

  Seeks to the keyframe before `start` (by timestamp), then decodes forward only as far as
  the window: a long file is never decoded whole."""
  with _open(path, max_pixels) as container:
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    wanted = set(range(start, start + count * stride, stride))
    frames = []
    try:
      if start > 0 and fps and stream.time_base:
        container.seek(int(start / fps / stream.time_base), stream=stream, backward=True,
                       any_frame=False)
      for frame in container.decode(stream):
        index = (round(frame.time * fps) if frame.time is not None and fps
                 else len(frames))
        if index in wanted:
          scale = min(1.0, max_side / max(frame.width, frame.height)) if max_side else 1.0
          frames.append(frame.to_ndarray(format="rgb24",
                                         width=max(1, round(frame.width * scale)),
                                         height=max(1, round(frame.height * scale))))
          if len(frames) == count:
            break
        elif index >= start + count * stride:
          break
    except (av.error.FFmpegError, ValueError) as e:
      raise VideoReadError(f"{_shown(path)}: decoding failed ({e})") from None
  if len(frames) < count:
    raise VideoReadError(f"{_shown(path)}: wanted {count} frames from {start} (stride {stride}), "
                         f"decoded {len(frames)}")
  return np.stack(frames)


def _upscale(frames: np.ndarray, factor: int) -> np.ndarray:
  return frames.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else frames


def display_upscale(height: int, width: int, shortest: int = 128) -> int:
  """The whole-number factor that brings a video's shorter side to about `shortest` pixels
  (at least 1): tiny samples stay visible in TensorBoard and the report page."""
  return max(1, shortest // max(1, min(height, width)))


def gif_bytes(frames_thwc: np.ndarray, fps: int = 8, upscale: int = 1) -> bytes:
  """uint8 frames `(T, H, W, 3)` as an endlessly looping animated GIF."""
  images = [Image.fromarray(f) for f in _upscale(np.asarray(frames_thwc, np.uint8), upscale)]
  buffer = io.BytesIO()
  images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                 duration=1000 // fps, loop=0)
  return buffer.getvalue()


def write_video(path: str, frames_thwc: np.ndarray, fps: int = 8, upscale: int = 1) -> None:
  """Writes uint8 frames `(T, H, W, 3)` to `.mp4` (H.264, yuv420p), `.webm` (VP9, yuv420p:
  what browsers play without proprietary codecs) or `.gif`."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in VIDEO_SUFFIXES:
    raise ValueError(f"--output {path!r}: unsupported video type; use one of {VIDEO_SUFFIXES}")
  frames = _upscale(np.asarray(frames_thwc, np.uint8), upscale)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if suffix == ".gif":
    with open(path, "wb") as f:
      f.write(gif_bytes(frames, fps))
    return
  # yuv420p (what every player decodes) needs even sizes: pad by edge replication.
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  if suffix == ".webm":
    codec, options = "libvpx-vp9", {"crf": "20", "b:v": "0", "deadline": "realtime",
                                    "cpu-used": "8"}
  elif "libx264" in av.codecs_available:
    codec, options = "libx264", {"crf": "12"}
  else:
    codec, options = "mpeg4", {}
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.options = options
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


def read_video(path: str) -> np.ndarray:
  """Decodes every frame of a video file to uint8 `(T, H, W, 3)`; `VideoReadError` if it
  cannot."""
  with _open(path) as container:
    try:
      frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, ValueError) as e:
      raise VideoReadError(f"{path}: decoding failed ({e})") from None
  if not frames:
    raise VideoReadError(f"{path}: no frames")
  return np.stack(frames)


def write_frame_strip(path: str, videos_nthwc: np.ndarray, upscale: int = 4) -> None:
  """One row per video, frames left to right, as a PNG contact sheet."""
  videos = np.asarray(videos_nthwc, np.uint8)
  rows = [np.concatenate(list(video), axis=1) for video in videos]
  sheet = _upscale(np.concatenate(rows, axis=0), upscale)
  Image.fromarray(sheet).save(path)
