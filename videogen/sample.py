"""Sample a video from a trained model.

    python -m videogen.sample --workdir DIR --prompt "a red circle moving right" --output out.mp4
    python -m videogen.sample --checkpoint EXPORT_DIR --prompt ... --output out.gif
        [--sampler heun|euler|ddim|ddpm|dpm_solver++] [--steps N] [--cache every --cache_every 2]
        [--image first.png]                      # image-to-video
        [--extend FRAMES]                        # autoregressive extension, one seamless video
        [--keyframes K]                          # keyframes first, then the frames between
        [--edit in.mp4 --strength 0.6 [--mask region.png]]   # SDEdit (+ inpainting)
        [--lora ADAPTER_DIR]                     # a LoRA adapter folded into the weights
        [--camera pan_left|zoom_in|orbit|... --camera_speed S]   # a camera-adapted model

Frame count and size default to the clip shape the checkpoint was trained at.
"""
import os
import sys

import numpy as np
from absl import flags

from videogen.cli import exit_with_error, load_generator_or_exit, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

# The names of videogen.diffusion.samplers.SAMPLERS, feature_cache.CACHE_POLICIES and
# videogen.models.camera.PATHS, written out so that `--help` answers before jax is imported
# (tests/test_cli.py checks that they match).
SAMPLERS = ("euler", "heun", "ddpm", "ddim", "dpm_solver++")
CACHE_POLICIES = ("none", "every", "threshold")
PATHS = ("static", "pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out",
         "orbit")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory (uses its latest EMA).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Export directory from videogen.export.")
_PROMPT = flags.DEFINE_string("prompt", None, "Text prompt.", required=True)
_NEGATIVE = flags.DEFINE_string("negative_prompt", "", "Prompt to guide away from.")
_OUTPUT = flags.DEFINE_string("output", None, "Output video (.mp4, .webm or .gif).", required=True)
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Frames (default: as trained).")
_HEIGHT = flags.DEFINE_integer("height", None, "Height in pixels (default: as trained).")
_WIDTH = flags.DEFINE_integer("width", None, "Width in pixels (default: as trained).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps (default: config sample.steps).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "CFG scale (default: config sample.guidance).")
_RESCALE = flags.DEFINE_float("guidance_rescale", None,
                              "Guidance rescale in [0, 1] (default: sample.guidance_rescale).")
_MIN_NOISE = flags.DEFINE_float(
    "guidance_min_noise", None, "Guide only at noise levels (flow t) >= this, in [0, 1) "
    "(default: sample.guidance_min_noise; 0 = every step).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Videos to draw; written as FILE_k.ext.")
_UPSCALE = flags.DEFINE_integer("upscale", 1, "Nearest-neighbour upscaling of written frames.")
_SAMPLER = flags.DEFINE_enum("sampler", None, list(SAMPLERS), "Sampler (default: config).")
_CACHE = flags.DEFINE_enum("cache", None, list(CACHE_POLICIES),
                           "Transformer feature cache policy (default: sample.cache.policy).")
_CACHE_EVERY = flags.DEFINE_integer("cache_every", 2, "--cache every: recompute every k steps.")
_CACHE_THRESHOLD = flags.DEFINE_float("cache_threshold", 0.05,
                                      "--cache threshold: relative input change that recomputes.")
_IMAGE = flags.DEFINE_string("image", None, "Image-to-video: the first frame (PNG/JPEG).")
_EXTEND = flags.DEFINE_integer("extend", None, "Extend autoregressively to this many frames.")
_KEYFRAMES = flags.DEFINE_integer("keyframes", None,
                                  "Keyframe interpolation: K keyframes, then the in-betweens.")
_EDIT = flags.DEFINE_string("edit", None, "SDEdit: the video to edit (mp4/gif).")
_STRENGTH = flags.DEFINE_float("strength", 0.6, "--edit: noise level to edit from, (0, 1].")
_MASK = flags.DEFINE_string("mask", None, "--edit: PNG, white = regenerate, black = keep.")
_LORA = flags.DEFINE_string("lora", None, "LoRA adapter folder (videogen.export --adapter_only).")
_CAMERA = flags.DEFINE_enum("camera", None, list(PATHS),
                            "Camera path for a camera-adapted model (text-to-video).")
_CAMERA_SPEED = flags.DEFINE_float("camera_speed", 0.03,
                                   "Pan: image widths per frame; zoom: factor; orbit: radians.")
_MODES = ("image", "extend", "keyframes", "edit")


def read_image(path: str) -> np.ndarray:
  """uint8 `(H, W, 3)`; a missing or unreadable file is one `error:` line."""
  from PIL import Image, UnidentifiedImageError
  if not os.path.isfile(path):
    exit_with_error(f"image file {path!r} does not exist")
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    exit_with_error(f"cannot read image {path!r}: {e}")


def read_video_or_exit(path: str) -> np.ndarray:
  from videogen import video_io
  if not os.path.isfile(path):
    exit_with_error(f"video file {path!r} does not exist")
  try:
    return video_io.read_video(path)
  except Exception as e:  # PyAV raises its own error types for corrupt containers
    exit_with_error(f"cannot decode video {path!r}: {str(e).splitlines()[0]}")


def generate(generator, prompts: list[str]) -> np.ndarray:
  """The videos the flags ask for: text-to-video or one of the control modes."""
  from videogen.sampling import control
  from videogen.diffusion.feature_cache import FeatureCache
  modes = [m for m in _MODES if flags.FLAGS[m].value is not None]
  if len(modes) > 1:
    exit_with_error(f"choose one of --{', --'.join(modes)}")
  if modes and _CAMERA.value:
    exit_with_error(f"--camera works with text-to-video, not with --{modes[0]}")
  options = dict(seed=_SEED.value, steps=_STEPS.value, guidance=_GUIDANCE.value,
                 guidance_rescale=_RESCALE.value, guidance_min_noise=_MIN_NOISE.value,
                 sampler=_SAMPLER.value,
                 negative_prompt=_NEGATIVE.value)
  if _CACHE.value:
    options["cache"] = FeatureCache(_CACHE.value, _CACHE_EVERY.value, _CACHE_THRESHOLD.value)
  if _IMAGE.value:
    return control.image_to_video(generator, prompts, read_image(_IMAGE.value),
                                  num_frames=_NUM_FRAMES.value, **options)
  if _EXTEND.value:
    return control.extend(generator, prompts, _EXTEND.value, **options)
  if _KEYFRAMES.value:
    return control.interpolate(generator, prompts, _KEYFRAMES.value, **options)
  if _EDIT.value:
    mask = None if _MASK.value is None else read_image(_MASK.value).mean(-1) > 127
    return control.edit(generator, prompts, read_video_or_exit(_EDIT.value), _STRENGTH.value,
                        mask=mask, **options)
  cameras = None
  if _CAMERA.value:
    from videogen.models.camera import named_path
    cameras = named_path(_CAMERA.value, _NUM_FRAMES.value or generator.config.data.num_frames,
                         _CAMERA_SPEED.value)
  return generator(prompts, num_frames=_NUM_FRAMES.value, height=_HEIGHT.value,
                   width=_WIDTH.value, cameras=cameras, **options)


# What a stablehlo export bakes in (videogen/formats/stablehlo.py), so these flags cannot
# change it.
_BAKED = ("steps", "guidance", "guidance_rescale", "guidance_min_noise", "sampler", "cache",
          "num_frames", "height", "width", "lora", "camera", *_MODES)


def _sample_stablehlo():
  """`--checkpoint` is a stablehlo export: it is the whole sampler, so it samples; flags that
  would change what it baked in are one line naming the exports that take them."""
  from videogen.formats import stablehlo
  baked = [f"--{name}" for name in _BAKED if flags.FLAGS[name].present]
  if baked:
    exit_with_error(
        f"--checkpoint {_CHECKPOINT.value} is a stablehlo export: its sampler, steps, guidance "
        f"and clip shape are fixed (see its {stablehlo.SIGNATURE_FILE}); drop "
        f"{', '.join(baked)}, or sample from the run (--workdir RUN) or an orbax export "
        f"(python -m videogen.export --workdir RUN --output DIR)")
  try:
    return stablehlo.sample_export(_CHECKPOINT.value, [_PROMPT.value] * _NUM_SAMPLES.value,
                                   _SEED.value, _NEGATIVE.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e).splitlines()[0])


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen import video_io
  if not _OUTPUT.value.lower().endswith(video_io.VIDEO_SUFFIXES):
    exit_with_error(f"--output must end in one of {video_io.VIDEO_SUFFIXES}")
  from videogen.formats import stablehlo
  if stablehlo.is_sampler_export(_CHECKPOINT.value) and not _WORKDIR.value:
    videos, config = _sample_stablehlo()
  else:
    generator = load_generator_or_exit(_WORKDIR.value, _CHECKPOINT.value, _LORA.value)
    generator.show_progress = True  # a bar on stderr per sampling call
    try:
      videos = generate(generator, [_PROMPT.value] * _NUM_SAMPLES.value)
    except ValueError as e:  # e.g. a requested shape the patch size does not divide
      exit_with_error(str(e))
    config = generator.config
  fps = config.sample.fps
  if len(videos) == 1:
    video_io.write_video(_OUTPUT.value, videos[0], fps=fps, upscale=_UPSCALE.value)
    print(_OUTPUT.value)
    return
  stem, dot, ext = _OUTPUT.value.rpartition(".")
  for k, video in enumerate(videos):
    video_io.write_video(f"{stem}_{k}{dot}{ext}", video, fps=fps, upscale=_UPSCALE.value)
    print(f"{stem}_{k}{dot}{ext}")


if __name__ == "__main__":
  main(sys.argv)
