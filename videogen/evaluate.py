"""Evaluate a trained model, or judge existing video files; writes `report.json` and a PNG
contact sheet, prints the headline figures as JSON.

    python -m videogen.evaluate --workdir DIR --metrics synthetic,flicker,warping[,fvd,clip] \\
        [--num_prompts 24 --prompt_set suite|plain --i3d_weights I3D --clip_model CLIP_DIR]
        [--denoise_from 0.5,0.7,0.85,1] [--seed 0 --num_seeds 10]
    python -m videogen.evaluate --videos MANIFEST --metrics synthetic [--reference MANIFEST]

A model trained on the synthetic world is prompted with its own world's benchmark suite
(`synthetic_grammar.prompt_suite`) and, for FVD, compared with ground-truth renders of the same
prompts (or `--reference` videos). `--videos` takes a CSV or JSONL manifest with `path` and
`text` columns and needs no model. Metrics: `videogen.eval.report`. With an `expected` column
(a caption of the grammar saying what the clip really shows), the judge's calibration on the
user's own clips is added: per-property confusion counts (`report["calibration"]`, and as a
table on stderr).
"""
import json
import os
import sys

from absl import flags

from videogen.cli import exit_with_error, load_generator_or_exit, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

# eval.report.METRICS, spelled out so that --help need not import jax (tests/test_help.py).
METRICS = ("synthetic", "flicker", "warping", "fvd", "clip")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory (uses its latest EMA).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Export directory from videogen.export.")
_VIDEOS = flags.DEFINE_string("videos", None, "Judge these videos (CSV/JSONL: path, text "
                              "[, expected: the caption the clip really shows, for the judge's "
                              "confusion counts]) instead of sampling a model.")
_REFERENCE = flags.DEFINE_string("reference", None, "FVD reference videos (CSV/JSONL manifest); "
                                 "default for a model: ground-truth renders of its prompts.")
_METRICS = flags.DEFINE_list("metrics", ["synthetic"], f"Metrics to compute, from {METRICS}.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 24, "Prompts (one video each).")
_PROMPT_SET = flags.DEFINE_enum("prompt_set", "suite", ["suite", "plain"],
                                "suite: colour, shape, direction, speed, count, bounces; plain: "
                                "'a <colour> <shape> moving <direction>' only.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds", 1, "Sample every prompt at noise seeds seed … seed+num_seeds-1 and judge the "
    "draws together (report['per_seed']: each seed's figures; the contact sheet: the first's).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps (default: config sample.steps).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "CFG scale (default: config sample.guidance).")
_DENOISE_FROM = flags.DEFINE_list(
    "denoise_from", [], "Also the denoising probe: ground-truth clips of the prompts noised to "
    "each of these SDEdit strengths in (0, 1] and denoised by the model, judged per strength "
    "(report['denoise_from']): where in the noise range each property is decided.")
_MIN_NOISE = flags.DEFINE_float("guidance_min_noise", None, "Guide only at noise levels "
                                "(flow t) >= this (default: sample.guidance_min_noise).")
_SHIFT = flags.DEFINE_float("shift", None, "Flow time shift of the sampler's grid (default: "
                            "sample.shift, else the training diffusion.shift).")
_ETA = flags.DEFINE_float("eta", None, "Fresh noise per step in [0, 1]: ddim, flow euler "
                          "(default: sample.eta).")
_I3D = flags.DEFINE_string("i3d_weights", "", "fvd: converted I3D weights (.safetensors).")
_I3D_EPS = flags.DEFINE_float("i3d_bn_eps", 1e-3, "fvd: I3D BatchNorm epsilon (1e-3 piergiaj / "
                              "TF-hub; 1e-5 for TATS' and cd-fvd's i3d_pretrained_400.pt).")
_CLIP = flags.DEFINE_string("clip_model", "", "clip: a transformers CLIP folder.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write report.json and "
                                  "contact_sheet.png (default: DIR/eval; with --videos "
                                  "M.csv, the folder M_eval beside the manifest).")


def read_videos(manifest: str) -> tuple[list, list[str]]:
  """Decoded videos and texts of a `path,text` manifest; one-line exit on a bad file."""
  from videogen import video_io
  from videogen.data.manifest import ManifestError, read_rows
  if not os.path.isfile(manifest):
    exit_with_error(f"manifest {manifest!r} does not exist")
  try:
    rows = read_rows(manifest)
  except ManifestError as e:
    exit_with_error(str(e))
  folder = os.path.dirname(os.path.abspath(manifest))
  videos, texts = [], []
  for number, row in enumerate(rows, 1):
    if not row.get("path") or "text" not in row:
      exit_with_error(f"{manifest}: row {number} needs 'path' and 'text'")
    try:
      videos.append(video_io.read_video(os.path.join(folder, row["path"])))
    except video_io.VideoReadError as e:
      exit_with_error(f"{manifest}: row {number}: {e}")
    texts.append(str(row["text"]))
  if not videos:
    exit_with_error(f"{manifest}: no rows")
  return videos, texts


def read_expected(manifest: str) -> list[str | None]:
  """The `expected` caption of each row of a manifest (None where empty or absent); one-line
  exit on one outside the judge's grammar."""
  from videogen.data.manifest import read_rows
  from videogen.data.synthetic_grammar import parse_prompt
  expected = []
  for number, row in enumerate(read_rows(manifest), 1):
    caption = str(row.get("expected") or "").strip() or None
    if caption:
      try:
        parse_prompt(caption)
      except ValueError as e:
        exit_with_error(f"{manifest}: row {number}: expected: {e}")
    expected.append(caption)
  return expected


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen import workdir as workdir_lib
  from videogen.eval import report as report_lib
  settings = report_lib.Settings(tuple(_METRICS.value), _I3D.value, _I3D_EPS.value, _CLIP.value)
  try:
    report_lib.check(settings)
  except (ValueError, FileNotFoundError) as e:
    exit_with_error(str(e))
  if _NUM_SEEDS.value < 1:
    exit_with_error(f"--num_seeds={_NUM_SEEDS.value}: give a count >= 1 of noise seeds")
  if _VIDEOS.value and _NUM_SEEDS.value > 1:
    exit_with_error("--num_seeds samples a model at several noise seeds; --videos judges files")
  reference = _REFERENCE.value and read_videos(_REFERENCE.value)[0]
  try:
    if _VIDEOS.value:
      videos, prompts = read_videos(_VIDEOS.value)
      report = report_lib.evaluate_videos(videos, prompts, settings, reference or None)
      expected = read_expected(_VIDEOS.value)
      if any(expected) and "per_video" in report:
        from videogen.eval import synthetic_judge
        report["calibration"] = synthetic_judge.calibration(
            [video["seen"] for video in report["per_video"]], expected)
        print(synthetic_judge.calibration_table(report["calibration"]), file=sys.stderr)
      output_dir = _OUTPUT_DIR.value or os.path.splitext(_VIDEOS.value)[0] + "_eval"
    else:
      report, videos = _evaluate_model(settings, reference or None)
      output_dir = _OUTPUT_DIR.value or workdir_lib.eval_dir(_CHECKPOINT.value or _WORKDIR.value)
  except ValueError as e:
    exit_with_error(str(e).splitlines()[0])
  written = report_lib.write(report, videos, output_dir,
                             prompts if _VIDEOS.value else None)
  print(f"wrote {' and '.join(written)}", file=sys.stderr)
  headline = {k: v for k, v in report.items() if k != "per_video"}
  print(json.dumps(report if _VIDEOS.value else headline))


def _evaluate_model(settings, reference) -> tuple[dict, list]:
  """Samples the workdir's or export's model on its world's prompts and scores the videos."""
  from videogen.eval import report as report_lib
  strengths = _strengths() if _DENOISE_FROM.value else []
  generator = load_generator_or_exit(_WORKDIR.value, _CHECKPOINT.value)
  generator.show_progress = True  # a bar on stderr as the denoising steps finish
  data = generator.config.data
  if data.source != "synthetic":
    exit_with_error(f"the model trained on data.source={data.source!r}; evaluate its videos "
                    "with --videos MANIFEST (its prompts are not the synthetic world's)")
  prompts = report_lib.suite_prompts(data, _NUM_PROMPTS.value, _PROMPT_SET.value)
  sampler = dict(steps=_STEPS.value, guidance=_GUIDANCE.value,
                 guidance_min_noise=_MIN_NOISE.value, shift=_SHIFT.value, eta=_ETA.value)
  report, videos = report_lib.evaluate_model(generator, prompts, settings, seed=_SEED.value,
                                             num_seeds=_NUM_SEEDS.value, reference=reference,
                                             **sampler)
  if strengths:
    report["denoise_from"] = report_lib.denoising_probe(generator, prompts, strengths,
                                                        seed=_SEED.value, **sampler)
  return report, videos


def _strengths() -> list[float]:
  """--denoise_from as numbers in (0, 1]; else one line and exit 2."""
  try:
    strengths = [float(value) for value in _DENOISE_FROM.value]
  except ValueError:
    strengths = []
  if not strengths or not all(0 < s <= 1 for s in strengths):
    exit_with_error(f"--denoise_from={','.join(_DENOISE_FROM.value)}: give SDEdit strengths in "
                    "(0, 1], e.g. 0.5,0.7,0.85,1")
  return strengths

if __name__ == "__main__":
  main(sys.argv)
