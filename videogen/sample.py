"""Sample a video from a trained model.

    python -m videogen.sample --workdir DIR --prompt "a red circle moving right" --output out.mp4
    python -m videogen.sample --checkpoint EXPORT_DIR --prompt ... --output out.gif

Frame count and size default to the clip shape the checkpoint was trained at.
"""
import sys

from absl import flags

from videogen.config import exit_with_error, parse_flags_or_exit

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory (uses its latest EMA).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Export directory from videogen.export.")
_PROMPT = flags.DEFINE_string("prompt", None, "Text prompt.", required=True)
_NEGATIVE = flags.DEFINE_string("negative_prompt", "", "Prompt to guide away from.")
_OUTPUT = flags.DEFINE_string("output", None, "Output video (.mp4 or .gif).", required=True)
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Frames (default: as trained).")
_HEIGHT = flags.DEFINE_integer("height", None, "Height in pixels (default: as trained).")
_WIDTH = flags.DEFINE_integer("width", None, "Width in pixels (default: as trained).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps (default: config sample.steps).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "CFG scale (default: config sample.guidance).")
_RESCALE = flags.DEFINE_float("guidance_rescale", None,
                              "Guidance rescale in [0, 1] (default: sample.guidance_rescale).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Videos to draw; written as FILE_k.ext.")
_UPSCALE = flags.DEFINE_integer("upscale", 1, "Nearest-neighbour upscaling of written frames.")


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen import video_io
  from videogen.generate import load_or_exit
  if not _OUTPUT.value.lower().endswith(video_io.VIDEO_SUFFIXES):
    exit_with_error(f"--output must end in one of {video_io.VIDEO_SUFFIXES}")
  generator = load_or_exit(_WORKDIR.value, _CHECKPOINT.value)
  try:
    videos = generator([_PROMPT.value] * _NUM_SAMPLES.value, seed=_SEED.value,
                       num_frames=_NUM_FRAMES.value, height=_HEIGHT.value, width=_WIDTH.value,
                       steps=_STEPS.value, guidance=_GUIDANCE.value,
                       guidance_rescale=_RESCALE.value,
                       negative_prompt=_NEGATIVE.value)
  except ValueError as e:  # e.g. a requested shape the patch size does not divide
    exit_with_error(str(e))
  fps = generator.config.sample.fps
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
