"""One evaluation report from videos and their prompts: the metrics behind `videogen.evaluate`
and the evaluation that training runs every `eval.every_steps`.

  synthetic  the exact judge (`synthetic_judge`): per-property accuracy and overall
  flicker    mean frame-to-frame pixel change (`temporal.flicker`)
  warping    mean warping error under the rigid flow of the objects the judge tracks
  fvd        Fréchet distance of I3D logits against reference videos (needs I3D weights)
  clip       frame-averaged CLIP score of each video against its prompt (needs a CLIP folder)

No flags here: the CLI and the training loop both call `evaluate_videos`.
"""
import dataclasses
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videogen import video_io
from videogen import workdir as workdir_lib
from videogen.config import ConfigError
from videogen.data import synthetic, synthetic_grammar
from videogen.data.pipeline import world_from_config
from videogen.diffusion import samplers
from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.eval import frechet, i3d, i3d_features, synthetic_judge, temporal
from videogen.eval.clip_score import ClipScorer
from videogen.eval.synthetic_judge import synthetic_prompts
from videogen.formats import clip as clip_format, i3d as i3d_format

METRICS = ("synthetic", "flicker", "warping", "fvd", "clip")
PROMPT_SETS = ("suite", "plain")  # `suite_prompts`


@dataclasses.dataclass(frozen=True)
class Settings:
  metrics: tuple[str, ...] = ("synthetic",)
  i3d_weights: str = ""      # converted I3D (`videogen.convert --from pytorch-i3d`)
  i3d_bn_eps: float = 1e-3   # piergiaj / TF-hub I3D; 1e-5 for TATS' / cd-fvd's copy
  clip_model: str = ""       # a transformers CLIP folder (config.json, weights, vocab, merges)
  batch_size: int = 8        # videos per I3D batch
  i3d_size: int = 224        # frames resized to this for I3D (FVD's standard; smaller: tests)


def check_config(eval_config) -> None:
  """The `eval` section's metrics and prompt set, or one ConfigError line."""
  unknown = sorted(set(eval_config.metrics) - set(METRICS))
  if unknown or eval_config.prompt_set not in PROMPT_SETS:
    raise ConfigError(f"eval.metrics {unknown or ''} / eval.prompt_set="
                      f"{eval_config.prompt_set!r}: choose metrics from {METRICS} and "
                      "prompt_set suite or plain")


def check(settings: Settings) -> None:
  """Fails before any sampling on unknown metrics and missing weights (one-line errors)."""
  unknown = sorted(set(settings.metrics) - set(METRICS))
  if unknown:
    raise ValueError(f"metrics {unknown} unknown; choose from {METRICS}")
  if "fvd" in settings.metrics and not os.path.isfile(settings.i3d_weights or ""):
    raise FileNotFoundError(f"fvd needs I3D weights; none at {settings.i3d_weights!r}: "
                            f"{i3d_format.HOW_TO_GET}")
  if "clip" in settings.metrics and not os.path.isdir(settings.clip_model or ""):
    raise FileNotFoundError(f"clip needs a CLIP model folder; none at {settings.clip_model!r}: "
                            f"`{clip_format.HOW_TO_GET.format(folder='DIR')}`")


def tracked_warping_error(video_thwc: np.ndarray) -> float:
  """Warping error of a synthetic-world video under the rigid flow of its own palette-coloured
  objects (masks and centroids from the judge's colour segmentation)."""
  labels = synthetic_judge.colour_labels(video_thwc)
  seen = synthetic_judge.observe_video(video_thwc, labels)
  colour_index = {name: k for k, name in enumerate(synthetic_judge.COLOURS)}
  # With no object seen, one empty mask (its centre unknown) leaves only static background.
  masks = [labels == colour_index[c] for c in seen] or [np.zeros(labels.shape, bool)]
  centres = np.stack([synthetic_judge.blob_moments(m)[1] for m in masks], 1)
  masks = np.stack(masks, 1)
  flow, valid = temporal.rigid_flow(masks, centres)
  return temporal.warping_error(video_thwc, flow, valid)


def _same_shape(videos: list[np.ndarray], what: str) -> np.ndarray:
  shapes = sorted({v.shape for v in videos})
  if len(shapes) > 1:
    raise ValueError(f"{what} needs videos of one shape; got {shapes[:3]}: resample them to "
                     "one frame count and size first")
  return np.stack(videos)


def frechet_video_distance(videos, reference, settings: Settings) -> float:
  features = i3d_features.I3DFeatures(settings.i3d_weights, size=settings.i3d_size,
                                      bn_eps=settings.i3d_bn_eps)
  stats = []
  for group, name in ((videos, "fvd"), (reference, "fvd's reference")):
    batch = _same_shape(list(group), name)
    stats.append(frechet.FeatureStats(i3d.NUM_CLASSES).update(
        features(batch, batch_size=settings.batch_size)).mean_and_covariance())
  return frechet.frechet_distance(*stats[0], *stats[1])


def evaluate_videos(videos, prompts: list[str], settings: Settings, reference=None) -> dict:
  """The report (JSON-ready) for uint8 videos `(T, H, W, 3)` each, with their prompts.
  `reference`: the real videos FVD compares against."""
  check(settings)
  videos = [np.asarray(v) for v in videos]
  for prompt, video in zip(prompts, videos):
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) < 2:
      raise ValueError(f"video for {prompt!r} has shape {video.shape}; want (T ≥ 2, H, W, 3)")
  report = {"num_videos": len(videos)}
  metrics = settings.metrics
  if "synthetic" in metrics:
    judged = synthetic_judge.judge(videos, prompts)
    report["per_video"] = judged.pop("per_video")
    report["synthetic"] = judged
  if "flicker" in metrics:
    report["flicker"] = float(np.mean([temporal.flicker(v) for v in videos]))
  if "warping" in metrics:
    report["warping_error"] = float(np.nanmean([tracked_warping_error(v) for v in videos]))
  if "fvd" in metrics:
    if reference is None or len(reference) < 2 or len(videos) < 2:
      raise ValueError("fvd needs at least 2 generated and 2 reference videos")
    report["fvd"] = frechet_video_distance(videos, reference, settings)
    report["fvd_reference_videos"] = len(reference)
  if "clip" in metrics:
    scores = ClipScorer.load(settings.clip_model).score(_same_shape(videos, "clip"), prompts)
    report["clip_score"] = float(np.mean(scores))
  return report


def scalars(report: dict, prefix: str = "eval/") -> dict[str, float]:
  """The report's headline numbers, flat, for the metrics log."""
  flat = {k: v for k, v in report.items() if isinstance(v, float)}
  flat.update({f"synthetic_{k}": v for k, v in report.get("synthetic", {}).items()
               if isinstance(v, float)})
  return {prefix + k: v for k, v in flat.items()}


def suite_prompts(data_config, n: int, prompt_set: str = "suite") -> list[str]:
  """`n` prompts of a synthetic-world model's own world: the benchmark suite (colour, shape,
  direction, speed, count, bounces) or `plain`, the "a <colour> <shape> moving <dir>" form."""
  if prompt_set == "plain":
    return synthetic_prompts(data_config.synthetic, n)
  return synthetic_grammar.prompt_suite(world_from_config(data_config), n)


def ground_truth(prompts: list[str], data_config) -> list[np.ndarray]:
  """Rendered clips that satisfy each prompt exactly, at the model's clip shape: FVD's
  reference for a synthetic-world model."""
  world = world_from_config(data_config)
  return [synthetic.render_prompt(p, world, seed=i).video for i, p in enumerate(prompts)]


def evaluate_model(generator, prompts: list[str], settings: Settings, *, seed: int = 0,
                   num_seeds: int = 1, reference=None, **sampler
                   ) -> tuple[dict, list[np.ndarray]]:
  """(report, videos) of a synthetic-world model sampled on `prompts` (`sampler`: overrides
  of the checkpoint's sampler settings, e.g. steps, guidance; None keeps the checkpoint's);
  FVD's reference defaults to ground-truth renders of the same prompts.

  `num_seeds` > 1 samples every prompt at noise seeds `seed` … `seed + num_seeds - 1` and
  judges all the draws together: one draw's fraction moves by a few points with the noise
  alone, so a config is judged on the pooled figures; `per_seed` keeps each seed's own (the
  spread), `noise_seeds` lists them. The videos returned are the first seed's."""
  if num_seeds < 1:
    raise ValueError(f"num_seeds={num_seeds}: must be >= 1")
  seeds = list(range(seed, seed + num_seeds))
  draws = [list(generator(prompts, seed=s, **sampler)) for s in seeds]
  every_prompt = list(prompts) * num_seeds
  if "fvd" in settings.metrics and reference is None:
    reference = ground_truth(every_prompt, generator.config.data)
  report = evaluate_videos([v for draw in draws for v in draw], every_prompt, settings,
                           reference)
  if num_seeds > 1:
    report["noise_seeds"] = seeds
    if "per_video" in report:  # seed-major: draw i is the i-th run of len(prompts) videos
      n = len(prompts)
      for i, video in enumerate(report["per_video"]):
        video["seed"] = seeds[i // n]
      report["per_seed"] = {str(s): synthetic_judge.scores(report["per_video"][i * n:(i + 1) * n])
                            for i, s in enumerate(seeds)}
  return report, draws[0]


def denoising_probe(generator, prompts: list[str], strengths, *, seed: int = 0,
                    **sampler) -> dict:
  """Where in the noise range the model settles each property: ground-truth renders of the
  prompts, noised to each SDEdit `strength` (the sampler's last `strength` of its steps) and
  denoised with their own prompts, then judged like samples. Strength 1 is plain
  text-to-video. A property kept from 0.7 and lost from 0.85 is one the model decides, and
  gets wrong, between those two noise levels. Per strength: the judge's accuracies, and for
  a flow model the flow time denoising starts from (`start_time`, 1 = pure noise). `sampler`:
  overrides of the checkpoint's sampler settings, as in `evaluate_model`."""
  clean = generator.encode(np.stack(ground_truth(prompts, generator.config.data)))
  diffusion = diffusion_from_config(generator.config.diffusion)
  probe = {}
  for strength in strengths:
    options = generator.options(clean.shape, strength=strength, **sampler)
    sample = generator.sample(prompts, clean.shape, options, seed=seed, init=clean)
    judged = synthetic_judge.judge(generator.decode(sample), prompts)
    row = {name: judged[name] for name in (*synthetic_judge.PROPERTIES, "overall")}
    if diffusion.is_flow:
      times = samplers.flow_times(diffusion, options.steps, options.shift)
      row["start_time"] = round(float(times[samplers.first_step(options.steps, strength)]), 4)
    probe[f"{strength:g}"] = row
  return probe


def write(report: dict, videos, output_dir: str, prompts: list[str] | None = None
          ) -> list[str]:
  """`report.json` and `contact_sheet.png` (`contact_sheet`) in `output_dir`, local or a
  bucket path; returns the two paths."""
  report_file = workdir_lib.eval_report_file(output_dir)
  sheet_file = workdir_lib.contact_sheet_file(output_dir)
  report_file.parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_json(report_file, report)
  with workdir_lib.local_target(sheet_file) as sheet:
    Image.fromarray(contact_sheet(report, videos, prompts)).save(sheet)
  return [str(report_file), str(sheet_file)]


def write_videos(videos, output_dir, fps: int = 8) -> list[str]:
  """Each video as `output_dir/videos/NN.webm` (VP9, upscaled so that tiny samples stay
  visible: `video_io.display_upscale`), local or a bucket path, for the report page
  (`videogen.report`); returns the paths."""
  workdir_lib.eval_videos(output_dir).mkdir(parents=True, exist_ok=True)
  written = []
  for number, video in enumerate(videos):
    video = np.asarray(video)
    target = workdir_lib.eval_video(output_dir, number)
    with workdir_lib.local_target(target) as file:
      video_io.write_video(file, video, fps,
                           upscale=video_io.display_upscale(*video.shape[1:3]))
    written.append(str(target))
  return written


def contact_sheet(report: dict, videos, prompts: list[str] | None = None, upscale: int = 4
                  ) -> np.ndarray:
  """uint8 `(H, W, 3)`: one row per video of the first video's shape, its frames left to
  right (upscaled), then its prompt and the judge's verdict: "pass" (green) or "fail:" and
  the failed checks (red). Prompts default to the report's `per_video` ones."""
  per_video = report.get("per_video") or [None] * len(videos)
  prompts = prompts or [v["prompt"] if v else "" for v in per_video]
  keep = [i for i, v in enumerate(videos) if v.shape == videos[0].shape]
  strips = np.stack([np.concatenate(list(videos[i]), axis=1) for i in keep])  # (N, H, T·W, 3)
  strips = strips.repeat(upscale, axis=1).repeat(upscale, axis=2)
  labels = []
  for i in keep:
    failed = per_video[i] and [k for k, ok in per_video[i]["checks"].items() if not ok]
    verdict = None if per_video[i] is None else ("fail: " + ", ".join(failed) if failed
                                                 else "pass")
    labels.append((prompts[i], verdict))
  font, pad, line = ImageFont.load_default(), 6, 14
  measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  text_width = max((measure.textlength(t, font=font) for pair in labels for t in pair if t),
                   default=0)
  n, height, width, _ = strips.shape
  row = max(height, 2 * line + 2 * pad)
  sheet = Image.new("RGB", (width + int(text_width) + 2 * pad, n * row), "white")
  draw = ImageDraw.Draw(sheet)
  for r, (strip, (prompt, verdict)) in enumerate(zip(strips, labels)):
    sheet.paste(Image.fromarray(strip), (0, r * row))
    draw.text((width + pad, r * row + pad), prompt, fill="black", font=font)
    if verdict:
      draw.text((width + pad, r * row + pad + line), verdict, font=font,
                fill=(0, 140, 0) if verdict == "pass" else (210, 0, 0))
  return np.asarray(sheet)
