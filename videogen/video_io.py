"""Video files: probing and windowed decoding (PyAV), writing (mp4 through PyAV, gif through
Pillow), and PNG frame strips."""
import dataclasses
import os

import av
import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".gif")
READABLE_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


class VideoReadError(ValueError):
  """A file that is not a readable video (missing, empty, corrupt, truncated)."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  num_frames: int
  fps: float
  height: int
  width: int

  @property
  def duration(self) -> float:
    return self.num_frames / self.fps if self.fps else 0.0


def _open(path: str):
  if not os.path.isfile(path):
    raise VideoReadError(f"{path}: no such file")
  if os.path.getsize(path) == 0:
    raise VideoReadError(f"{path}: empty file")
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise VideoReadError(f"{path}: not a readable video ({e})") from None
  if not container.streams.video:
    container.close()
    raise VideoReadError(f"{path}: has no video stream")
  return container


def probe(path: str) -> VideoInfo:
  """Frame count, frame rate and size. Counts frames by demuxing packets (no decoding) when
  the container does not state the count."""
  with _open(path) as container:
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    count = stream.frames
    try:
      if not count:
        count = sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as e:
      raise VideoReadError(f"{path}: unreadable stream ({e})") from None
    if not count or not stream.codec_context.width:
      raise VideoReadError(f"{path}: no frames")
    return VideoInfo(int(count), fps, stream.codec_context.height, stream.codec_context.width)


def read_frames(path: str, start: int, count: int, stride: int = 1) -> np.ndarray:
  """Frames `start, start + stride, …` (`count` of them) as uint8 `(count, H, W, 3)`.

  Seeks to the keyframe before `start` (by timestamp), then decodes forward only as far as
  the window: a long file is never decoded whole."""
  with _open(path) as container:
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
          frames.append(frame.to_ndarray(format="rgb24"))
          if len(frames) == count:
            break
        elif index >= start + count * stride:
          break
    except (av.error.FFmpegError, ValueError) as e:
      raise VideoReadError(f"{path}: decoding failed ({e})") from None
  if len(frames) < count:
    raise VideoReadError(f"{path}: wanted {count} frames from {start} (stride {stride}), "
                         f"decoded {len(frames)}")
  return np.stack(frames)


def _upscale(frames: np.ndarray, factor: int) -> np.ndarray:
  return frames.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else frames


def write_video(path: str, frames_thwc: np.ndarray, fps: int = 8, upscale: int = 1) -> None:
  """Writes uint8 frames `(T, H, W, 3)` to `.mp4` (H.264, yuv420p) or `.gif`."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in VIDEO_SUFFIXES:
    raise ValueError(f"--output {path!r}: unsupported video type; use one of {VIDEO_SUFFIXES}")
  frames = _upscale(np.asarray(frames_thwc, np.uint8), upscale)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if suffix == ".gif":
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
    return
  # yuv420p (what every player decodes) needs even sizes: pad by edge replication.
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  with av.open(path, mode="w") as container:
    stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                  rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.options = {"crf": "12"} if stream.codec_context.name == "libx264" else {}
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
