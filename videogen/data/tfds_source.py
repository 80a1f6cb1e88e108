"""TFDS video datasets as a bucketed source (`data.source="tfds"`), and a TFDS builder for
our manifests so a dataset is prepared once and read fast (ArrayRecord) on every host.

    python -m videogen.prepare_data --input /data/clips --output clips.csv --tfds_dir /data/tfds
    python -m videogen.train ... --config.data.source=tfds --config.data.tfds.data_dir=/data/tfds

Any TFDS dataset with a `Video` feature works (`data.tfds.name`, `split`, `video_key`,
`text_key`; a `ClassLabel` text key becomes its class name). Examples are read undecoded
(`DESERIALIZE_NO_DECODE`): a clip's frame count is its number of encoded frames, its size the
`height`/`width` features when present (our builder writes them) or its first frame's, and
only the sampled window's frames are decoded.
"""
import io
import warnings

import ml_collections
import numpy as np
from PIL import Image

from videogen import video_io
from videogen.data.manifest import Clip, read_manifest

BUILDER_NAME = "video_manifest"


def _tfds():
  import tensorflow_datasets as tfds  # imported lazily: only this source needs TF
  _register_builder(tfds)
  return tfds


def open_source(cfg: ml_collections.ConfigDict):
  """A random-access TFDS data source of undecoded examples (`tf.train.Example` protos)."""
  tfds = _tfds()
  try:
    return tfds.data_source(cfg.name, split=cfg.split, data_dir=cfg.data_dir or None,
                            download=False,
                            deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE)
  except Exception as e:  # TFDS raises a zoo of types for a missing/unbuilt dataset
    raise FileNotFoundError(f"data.tfds: cannot open {cfg.name!r} split {cfg.split!r} in "
                            f"{cfg.data_dir or 'the default data_dir'}: "
                            f"{str(e).splitlines()[0]}") from None


def _fields(example) -> dict[str, list]:
  """A `tf.train.Example` → {feature: list of values} (encoded frames stay bytes)."""
  return {key: list(getattr(feature, feature.WhichOneof("kind")).value)
          for key, feature in example.features.feature.items() if feature.WhichOneof("kind")}


def _caption(fields: dict, cfg, features) -> str:
  value = (fields.get(cfg.text_key) or [b""])[0]
  feature = features[cfg.text_key] if cfg.text_key in features else None
  if feature is not None and hasattr(feature, "int2str"):
    return feature.int2str(int(value)).replace("_", " ")
  return value.decode() if isinstance(value, bytes) else str(value)


def _decode_frame(encoded) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


def load_clips(cfg: ml_collections.ConfigDict) -> list[Clip]:
  """One Clip per example (its source `path` when stored, else `tfds:INDEX`), read without
  decoding videos."""
  source = open_source(cfg)
  features = _tfds().builder(cfg.name, data_dir=cfg.data_dir or None).info.features
  clips = []
  for index in range(len(source)):
    fields = _fields(source[index])
    frames = fields.get(cfg.video_key, [])
    if not frames:
      continue
    if "height" in fields and "width" in fields:
      height, width = int(fields["height"][0]), int(fields["width"][0])
    else:
      height, width = _decode_frame(frames[0]).shape[:2]
    source_path = (fields.get("path") or [b""])[0]
    clips.append(Clip(path=source_path.decode() or f"tfds:{index}",
                      text=_caption(fields, cfg, features),
                      num_frames=len(frames), height=height, width=width,
                      fps=float((fields.get("fps") or [0.0])[0]) or 1.0))
  return clips


class TfdsReader:
  """`(clip index, start, count, stride) → uint8 frames`, decoding only the window."""

  def __init__(self, cfg: ml_collections.ConfigDict):
    self.cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    self._source = None

  def __getstate__(self):
    return {"cfg": self.cfg, "_source": None}

  def __call__(self, index: int, start: int, count: int, stride: int) -> np.ndarray:
    if self._source is None:
      self._source = open_source(ml_collections.ConfigDict(self.cfg))
    frames = _fields(self._source[int(index)])[self.cfg["video_key"]]
    window = frames[start:start + (count - 1) * stride + 1:stride]
    if len(window) < count:
      raise video_io.VideoReadError(f"tfds example {index}: wanted {count} frames from {start}, "
                                    f"it has {len(frames)}")
    try:
      return np.stack([_decode_frame(f) for f in window])
    except OSError as e:
      raise video_io.VideoReadError(f"tfds example {index}: bad frame ({e})") from None


_REGISTERED = []


def _register_builder(tfds) -> None:
  """Defines (once) the builder that turns a manifest into a TFDS dataset."""
  if _REGISTERED:
    return

  class VideoManifest(tfds.core.GeneratorBasedBuilder):
    """Clips of a videogen manifest: frames (PNG), caption and shape."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, manifest: str = "", **kwargs):
      self._manifest = manifest
      super().__init__(**kwargs)

    def _info(self):
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
          "video": tfds.features.Video(shape=(None, None, None, 3)),
          "caption": tfds.features.Text(), "path": tfds.features.Text(),
          "num_frames": np.int32, "height": np.int32, "width": np.int32, "fps": np.float32}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      clips, _ = read_manifest(self._manifest)
      for index, clip in enumerate(clips):
        try:
          frames = video_io.read_frames(clip.path, 0, clip.num_frames)
        except video_io.VideoReadError as e:
          warnings.warn(f"not in the TFDS dataset: {e}")
          continue
        yield index, {"video": frames, "caption": clip.text, "path": clip.path,
                      "num_frames": len(frames),
                      "height": frames.shape[1], "width": frames.shape[2], "fps": clip.fps}

  _REGISTERED.append(VideoManifest)


def build_from_manifest(manifest: str, data_dir: str) -> int:
  """Prepares `video_manifest` in `data_dir` (ArrayRecord); returns its example count."""
  _tfds()
  builder = _REGISTERED[0](manifest=manifest, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder.info.splits["train"].num_examples
