"""Evaluate a trained model; writes `report.json` and a PNG contact sheet.

    python -m videogen.evaluate --workdir DIR --metrics synthetic [--num_prompts 24]

`synthetic`: prompts "a <colour> <shape> moving <direction>" drawn from the checkpoint's own
synthetic world; the pixel judge scores colour presence and direction of motion.
"""
import json
import os
import sys

from absl import flags

from videogen.eval.synthetic_judge import synthetic_prompts
from videogen.config import exit_with_error, parse_flags_or_exit

METRICS = ("synthetic",)

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory (uses its latest EMA).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Export directory from videogen.export.")
_METRICS = flags.DEFINE_list("metrics", ["synthetic"], f"Metrics to compute, from {METRICS}.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 24, "Prompts (one video each).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps (default: config sample.steps).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "CFG scale (default: config sample.guidance).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write (default: DIR/eval).")


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  unknown = sorted(set(_METRICS.value) - set(METRICS))
  if unknown:
    exit_with_error(f"--metrics {unknown} unknown; choose from {METRICS}")
  from videogen import video_io
  from videogen.eval import synthetic_judge
  from videogen.generate import load_or_exit
  generator = load_or_exit(_WORKDIR.value, _CHECKPOINT.value)
  source = _CHECKPOINT.value or _WORKDIR.value
  prompts = synthetic_prompts(generator.config.data.synthetic, _NUM_PROMPTS.value)
  videos = generator(prompts, seed=_SEED.value, steps=_STEPS.value, guidance=_GUIDANCE.value)
  report = {"num_videos": len(prompts),
            "synthetic": synthetic_judge.judge(videos, prompts),
            "per_video": [{"prompt": p, "observed": synthetic_judge.observed_direction(
                v, synthetic_judge.parse_prompt(p)["colour"])} for p, v in zip(prompts, videos)]}
  output_dir = _OUTPUT_DIR.value or os.path.join(source, "eval")
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  video_io.write_frame_strip(os.path.join(output_dir, "contact_sheet.png"), videos)
  print(json.dumps({"num_videos": report["num_videos"], "synthetic": report["synthetic"]}))


if __name__ == "__main__":
  main(sys.argv)
