"""The command-line contract, driven as a user would: real subprocesses and files (SIGTERM is
rehearsed on a bucket workdir, test_gcs_workdir.py, and on a pod, test_pod_rehearsal.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, one_line_error, run_cli
from videogen import video_io
from videogen.data import frames

TEST_CONFIG = "configs/tiny.py:test"


run = run_cli


@pytest.mark.parametrize("override,key", [
    ("--config.model.widht=64", "model.widht"),
    ("--config.nonsense=1", "nonsense"),
    ("--config.train.num_steps=many", "train.num_steps"),
    ("--config.model.layout=diagonal", "model.layout"),
    ("--config.data.height=30", "data.height"),
])
def test_bad_config_gives_one_line_naming_the_key(tmp_path, override, key):
  # The space-separated form, as in the README.
  result = run("videogen.train", "--config", TEST_CONFIG, "--workdir", str(tmp_path), override,
               timeout=60)
  assert key in one_line_error(result)
  assert not os.path.exists(tmp_path / "checkpoints")


def test_missing_config_file_and_missing_workdir(tmp_path):
  assert "configs/nope.py" in one_line_error(
      run("videogen.train", "--config=configs/nope.py", f"--workdir={tmp_path}", timeout=60))
  assert "configs/nope.py" in one_line_error(
      run("videogen.train", "--config", "configs/nope.py", f"--workdir={tmp_path}", timeout=60))
  assert "workdir" in one_line_error(run("videogen.train", f"--config={TEST_CONFIG}",
                                         timeout=60))
  assert "no variant 'foo'" in one_line_error(
      run("videogen.train", "--config=configs/tiny.py:foo", f"--workdir={tmp_path}", timeout=60))


def test_sample_without_checkpoint_fails_clearly(tmp_path):
  line = one_line_error(run("videogen.sample", f"--workdir={tmp_path}", "--prompt=a red circle",
                            f"--output={tmp_path}/x.mp4", timeout=60))
  assert "no checkpoint" in line and str(tmp_path) in line
  assert not os.path.exists(tmp_path / "x.mp4")


def test_train_writes_metrics_tensorboard_and_checkpoints(trained):
  lines = [json.loads(l) for l in open(trained / "metrics.jsonl")]
  train_rows = [l for l in lines if "loss" in l]  # evaluations (steps 2, 4) have own rows
  assert [l["step"] for l in train_rows] == [1, 2, 3, 4]
  assert all("steps_per_sec" in l for l in train_rows)
  assert [l["step"] for l in lines if "eval/synthetic_overall" in l] == [2, 4]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(trained / "tensorboard"))
  assert sorted(os.listdir(trained / "checkpoints")) == ["2", "4"]


def test_sample_writes_a_playable_video_at_the_trained_shape(trained, tmp_path):
  known = run("videogen.sample", f"--workdir={trained}", "--prompt=a red circle moving right",
              f"--output={tmp_path}/a.mp4", "--seed=3", check=True)
  assert "warning:" not in known.stderr
  frames = video_io.read_video(str(tmp_path / "a.mp4"))
  assert frames.shape == (4, 16, 16, 3)
  # Words the model never saw: one warning naming them and the vocabulary it was trained on.
  unknown = run("videogen.sample", f"--workdir={trained}", "--num_samples=2",
                "--prompt=a majestic pink dragon circle moving right", "--negative_prompt=blurry",
                f"--output={tmp_path}/b.gif", "--num_frames=6", "--height=24", "--width=32",
                check=True)
  warnings = [l for l in unknown.stderr.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1 and unknown.stderr.count("dragon") == 1, unknown.stderr
  assert "'majestic', 'pink', 'dragon', 'blurry'" in warnings[0]
  assert "trained on the words: a and blue" in warnings[0] and "triangle" in warnings[0]
  assert "'a {colour} {shape} moving {direction}'" in warnings[0]
  assert "sampling 2 videos" in unknown.stderr and "100%" in unknown.stderr  # progress
  from PIL import Image
  gif = Image.open(tmp_path / "b_1.gif")
  assert gif.n_frames == 6 and gif.size == (32, 24)


def test_export_then_sample_from_the_export_matches_the_workdir(trained, tmp_path):
  run("videogen.export", f"--workdir={trained}", f"--output={tmp_path}/export", check=True)
  assert sorted(os.listdir(tmp_path / "export")) == ["config.json", "metadata.json", "params"]
  args = ["--prompt=a blue square moving up", "--seed=5"]
  run("videogen.sample", f"--checkpoint={tmp_path}/export", f"--output={tmp_path}/e.gif",
      *args, check=True)
  run("videogen.sample", f"--workdir={trained}", f"--output={tmp_path}/w.gif", *args, check=True)
  from PIL import Image, ImageSequence
  frames = lambda p: np.stack([np.asarray(f.convert("RGB"))
                               for f in ImageSequence.Iterator(Image.open(p))])
  np.testing.assert_array_equal(frames(tmp_path / "e.gif"), frames(tmp_path / "w.gif"))
  assert "already exists" in one_line_error(
      run("videogen.export", f"--workdir={trained}", f"--output={tmp_path}/export", timeout=60))


def test_evaluate_writes_report_and_contact_sheet(trained, tmp_path):
  result = run("videogen.evaluate", f"--workdir={trained}", "--num_prompts=4", "--steps=2",
               "--metrics=synthetic,flicker,warping", f"--output_dir={tmp_path}", check=True)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["num_videos"] == 4
  assert "sampling 4 videos" in result.stderr and "100%" in result.stderr  # progress
  assert f"wrote {tmp_path}/report.json and {tmp_path}/contact_sheet.png" in result.stderr
  assert {"colour", "shape", "direction", "count", "overall"} <= set(report["synthetic"])
  assert 0 <= report["flicker"] <= 1 and 0 <= report["warping_error"] <= 1
  assert len(json.load(open(tmp_path / "report.json"))["per_video"]) == 4
  assert os.path.isfile(tmp_path / "contact_sheet.png")
  # The fixture's run evaluated itself at step 4 (eval.every_steps) and logged the figures.
  assert os.path.isfile(trained / "eval" / "step_4" / "report.json")
  logged = [json.loads(line) for line in open(trained / "metrics.jsonl")]
  assert any("eval/synthetic_overall" in row and row["step"] == 4 for row in logged)
  assert "I3D weights" in one_line_error(
      run("videogen.evaluate", f"--workdir={trained}", "--metrics=fvd", timeout=60))


def test_denoising_probe_from_full_noise_is_text_to_video(trained, monkeypatch):
  """The probe at strength 1 starts from pure noise, so it judges exactly the text-to-video
  samples of the same seed and sampler settings; a lower strength starts on the sampler's
  shifted time grid."""
  import numpy as np
  from videogen.eval import report as report_lib, synthetic_judge
  from videogen.sampling.generator import Generator
  generator = Generator.load(str(trained))
  prompts = report_lib.suite_prompts(generator.config.data, 2, "plain")
  judged_videos, judge = [], synthetic_judge.judge
  monkeypatch.setattr(synthetic_judge, "judge",
                      lambda videos, prompts: judged_videos.append(videos) or judge(videos, prompts))
  probe = report_lib.denoising_probe(generator, prompts, [1.0, 0.5], seed=3, guidance=2.0)
  np.testing.assert_array_equal(judged_videos[0], generator(prompts, seed=3, guidance=2.0))
  assert not np.array_equal(judged_videos[0], generator(prompts, seed=3))  # guidance 4
  assert probe["1"]["start_time"] == 1.0
  steps, shift = generator.config.sample.steps, generator.config.diffusion.shift
  u = round(steps * 0.5) / steps  # the last half of the steps run
  assert probe["0.5"]["start_time"] == pytest.approx(shift * u / (1 + (shift - 1) * u), abs=1e-4)
  result = run_cli("videogen.evaluate", f"--workdir={trained}", "--denoise_from=0.5,1.5")
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      "error: --denoise_from=0.5,1.5: give SDEdit strengths in (0, 1], e.g. 0.5,0.7,0.85,1"]
  with pytest.raises(ValueError, match=r"guidance_min_noise=1.0: must be in \[0, 1\)"):
    generator.options((1, 4, 16, 16, 3), guidance_min_noise=1.0)  # no step guided
  with pytest.raises(ValueError, match=r"shift=0.0: must be > 0"):
    generator.options((1, 4, 16, 16, 3), shift=0.0)
  for flag, message in (("--shift=-1", "error: shift=-1.0: must be > 0"),
                        ("--eta=1.5", "error: sample.eta=1.5: stochastic flow steps take")):
    result = run_cli("videogen.evaluate", f"--workdir={trained}", flag)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message)
  with pytest.raises(TypeError, match=r"unknown sampler options \['guidnace'\]"):
    generator(prompts, guidnace=2.0)  # not sampled silently with the checkpoint's guidance
  stochastic = generator(prompts, seed=3, guidance=2.0, eta=0.5)  # compiled per eta
  assert not np.array_equal(stochastic, judged_videos[0])
  np.testing.assert_array_equal(generator(prompts, seed=3, guidance=2.0, eta=0.5), stochastic)


def test_several_noise_seeds_pool_the_draws_each_seed_alone_would_judge(trained):
  """`num_seeds` samples each prompt at consecutive noise seeds: each seed's figures equal
  that seed evaluated alone, and the pooled fraction is the draws' (stated-weighted) mean."""
  from videogen.eval import report as report_lib, synthetic_judge
  from videogen.sampling.generator import Generator
  generator = Generator.load(str(trained))
  prompts = report_lib.suite_prompts(generator.config.data, 3, "suite")
  settings = report_lib.Settings(("synthetic",))
  pooled, videos = report_lib.evaluate_model(generator, prompts, settings, seed=3, num_seeds=2,
                                             steps=2)
  alone = [report_lib.evaluate_model(generator, prompts, settings, seed=s, steps=2)
           for s in (3, 4)]
  np.testing.assert_array_equal(videos, alone[0][1])  # the contact sheet's: the first seed's
  assert not np.array_equal(alone[0][1], alone[1][1])
  assert pooled["noise_seeds"] == [3, 4] and pooled["num_videos"] == 6
  assert [v["seed"] for v in pooled["per_video"]] == [3, 3, 3, 4, 4, 4]
  for seed, (report, _) in zip(("3", "4"), alone):
    assert pooled["per_seed"][seed] == {k: v for k, v in report["synthetic"].items()
                                        if k != "by_objects"}
  for name in (*synthetic_judge.PROPERTIES, "overall"):
    counts = [r["synthetic"]["stated"].get(name, r["num_videos"]) for r, _ in alone]
    right = [r["synthetic"][name] * n for (r, _), n in zip(alone, counts) if n]
    if sum(counts):
      assert pooled["synthetic"][name] == pytest.approx(sum(right) / sum(counts))
  assert "--num_seeds=0: give a count >= 1" in one_line_error(
      run_cli("videogen.evaluate", f"--workdir={trained}", "--num_seeds=0", timeout=60))
  assert "--videos judges files" in one_line_error(
      run_cli("videogen.evaluate", "--videos=clips.csv", "--num_seeds=2", timeout=60))


def test_bench_json_reports_mfu_compile_time_and_memory_per_frame_count():
  import json
  # Not videogen.bench.step's own loader: the bench modules define absl flags that clash
  # with each other inside one test process.
  from videogen.config import load_config_file
  from videogen.models.flops import dit_forward_flops, train_step_flops
  from videogen.models.text_to_video import spec_from_config
  result = run_cli("videogen.bench", "--configs=tiny:test", "--steps=1", "--json",
                   "--frames=4,8", "--set=model.token_adaln=True,model.patch_size=(2,8,8)",
                   "--set=model.head_mlp_ratio=2.0", check=True)
  rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert [row["shape"] for row in rows] == ["4x16x16", "8x16x16"]
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py:test"))  # what --set timed
  config.model.update(token_adaln=True, patch_size=(2, 8, 8), head_mlp_ratio=2.0)
  assert rows[0]["model_TFLOP_per_step"] * 1e12 == pytest.approx(train_step_flops(
      dit_forward_flops(spec_from_config(config.model), 4, 16, 16, config.text.max_length,
                        config.model.text_dim, config.train.batch_size)))
  four, eight = rows
  assert four["params_M"] == eight["params_M"]
  for row in rows:
    # The rates are the step's work over its measured time, and MFU is against the peak.
    assert row["clips_per_s"] * row["step_s"] == pytest.approx(row["batch"])
    assert row["achieved_TFLOP_s"] * row["step_s"] == pytest.approx(row["model_TFLOP_per_step"])
    assert row["MFU_vs_measured_matmul"] * row["matmul_peak_TFLOP_s"] == pytest.approx(
        row["achieved_TFLOP_s"])
    assert 0 < row["MFU_vs_measured_matmul"] < 1
    # A device holds params, EMA and Adam's two moments (f32, replicated in tiny:test).
    assert row["peak_memory_GB"] * 1e9 >= 4 * 4 * row["params_M"] * 1e6
  # Twice the frames: twice the video tokens; under twice the FLOPs (the text side is fixed).
  tokens = lambda row: row["tokens_per_s"] * row["step_s"]  # noqa: E731
  assert tokens(eight) == pytest.approx(2 * tokens(four))
  assert 1.5 < eight["model_TFLOP_per_step"] / four["model_TFLOP_per_step"] < 2


def test_bench_set_names_a_missing_key_in_one_line():
  assert one_line_error(run_cli("videogen.bench", "--configs=tiny:test",
                                "--set=model.token_adalm=True", timeout=60)) == (
      "error: --set model.token_adalm=True: no config key 'model.token_adalm' "
      "(section.key=value, e.g. model.token_adaln=True)")


def test_bench_builds_a_sentencepiece_config_with_its_own_tokenizer():
  """`bench --configs tiny:suite` needs no run directory: the tokenizer is trained in a
  temporary one, as training would, and tokenises the bench's caption. (A subprocess: the
  bench module defines absl flags that other CLI modules define too.)"""
  script = """if True:
    from videogen.bench.step import load_config, step_and_batch
    from videogen.parallel import mesh as mesh_lib
    config = load_config("tiny:test")
    config.text.update(tokenizer="sentencepiece", max_length=12)
    _, _, batch = step_and_batch(config, mesh_lib.create_mesh(config.mesh),
                                 mesh_lib.rules_from_config(config.mesh))
    print(batch["tokens"].shape, int(batch["token_mask"][0].sum()))"""
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  shape, pieces = result.stdout.strip().rsplit(" ", 1)
  assert shape == "(8, 12)" and int(pieces) > 3  # "a red circle moving right" in pieces


def test_control_modes_keep_their_conditions_through_the_real_model(trained):
  from videogen.sampling import control
  from videogen.sampling.generator import Generator
  generator = Generator.load(str(trained))
  prompts, options = ["a red circle moving right"], dict(steps=4, sampler="heun")
  image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8)
  animated = control.image_to_video(generator, prompts, image, **options)
  np.testing.assert_array_equal(animated[0, 0], frames.cover_crop(image, 16, 16))
  assert animated.shape == (1, 4, 16, 16, 3)

  video = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), np.uint8)
  region = np.zeros((16, 16), bool)
  region[4:12, 8:] = True
  edited = control.edit(generator, prompts, video, 0.8, mask=region, **options)
  np.testing.assert_array_equal(edited[0][:, ~region], video[:, ~region])
  assert np.abs(edited[0][:, region].astype(int) - video[:, region]).mean() > 5

  assert control.extend(generator, prompts, 9, overlap=1, **options).shape[1] == 9
  assert control.interpolate(generator, prompts, 3, **options).shape[1] == 2 * 3 + 1


def test_sample_cli_control_flags_and_their_errors(trained, tmp_path):
  run("videogen.sample", f"--workdir={trained}", "--prompt=a red circle moving right",
      f"--output={tmp_path}/long.gif", "--extend=9", "--steps=4", "--sampler=heun",
      "--cache=every", check=True)
  from PIL import Image
  assert Image.open(tmp_path / "long.gif").n_frames == 9
  assert "does not exist" in one_line_error(
      run("videogen.sample", f"--workdir={trained}", "--prompt=a", f"--output={tmp_path}/x.gif",
          "--image=nope.png", timeout=120))
  assert "no camera adapter" in one_line_error(
      run("videogen.sample", f"--workdir={trained}", "--prompt=a", f"--output={tmp_path}/x.gif",
          "--camera=pan_left", timeout=120))
  (tmp_path / "broken.mp4").write_bytes(b"not a video")
  assert "cannot decode video" in one_line_error(
      run("videogen.sample", f"--workdir={trained}", "--prompt=a", f"--output={tmp_path}/x.gif",
          f"--edit={tmp_path}/broken.mp4", timeout=120))


def test_camera_and_frame_conditioned_model_samples_along_a_path_and_from_an_image(tmp_path):
  """A run with the camera adapter and concat frame conditioning samples with --camera and
  --image (the conditions' exactness is tested in-process, without GIF quantisation)."""
  run("videogen.train", f"--config={TEST_CONFIG}", f"--workdir={tmp_path}/run",
      "--config.model.camera=True", "--config.data.synthetic.camera=mixed",
      "--config.model.frame_condition=concat", check=True)
  run("videogen.sample", f"--workdir={tmp_path}/run", "--prompt=a red circle moving right",
      f"--output={tmp_path}/pan.gif", "--camera=pan_left", check=True)
  assert video_io.read_video(str(tmp_path / "pan.gif")).shape == (4, 16, 16, 3)
  image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
  from PIL import Image
  Image.fromarray(image).save(tmp_path / "first.png")
  run("videogen.sample", f"--workdir={tmp_path}/run", "--prompt=a red circle moving right",
      f"--output={tmp_path}/i2v.gif", f"--image={tmp_path}/first.png", check=True)
  assert video_io.read_video(str(tmp_path / "i2v.gif")).shape == (4, 16, 16, 3)


def test_sample_cli_keyframes_masked_edit_and_lora(trained, tmp_path):
  """The remaining control flags through the CLI: --lora with --keyframes writes
  (K−1)(T−1)+1 frames, --edit with --mask writes a video, a missing mask is one line; and a
  saved nonzero adapter changes what the model samples."""
  import flax.linen as nn
  import jax
  from videogen import checkpoints
  from videogen.sampling.generator import Generator
  from videogen.models import lora
  from videogen.models.text_to_video import build_model, example_inputs
  generator = Generator.load(str(trained))
  config = generator.config
  config.model.lora_rank = 2
  model = build_model(config, 128, config.model.text_dim)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), *example_inputs(config, model))["params"])
  adapter = jax.tree.map(lambda a: a + 0.5, lora.split_adapter(params)[1])  # B ≠ 0: it acts
  checkpoints.save_adapter(str(tmp_path / "adapter"), adapter, lora.adapter_meta(model.spec))
  prompt = ["a red circle moving right"]
  base = generator(prompt, seed=2)
  generator.params = checkpoints.apply_adapter(generator.params, str(tmp_path / "adapter"),
                                               generator.model.spec)
  assert np.abs(generator(prompt, seed=2).astype(int) - base).mean() > 1

  common = [f"--workdir={trained}", "--prompt=a red circle moving right", "--seed=2"]
  run("videogen.sample", *common, f"--output={tmp_path}/keys.gif", "--keyframes=3",
      f"--lora={tmp_path}/adapter", check=True)
  assert video_io.read_video(str(tmp_path / "keys.gif")).shape[0] == 2 * 3 + 1
  video_io.write_video(str(tmp_path / "in.mp4"), base[0])
  from PIL import Image
  Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
  run("videogen.sample", *common, f"--output={tmp_path}/edit.gif", f"--edit={tmp_path}/in.mp4",
      f"--mask={tmp_path}/mask.png", check=True)
  assert video_io.read_video(str(tmp_path / "edit.gif")).shape == base.shape[1:]
  assert "does not exist" in one_line_error(
      run("videogen.sample", *common, f"--output={tmp_path}/x.gif", f"--edit={tmp_path}/in.mp4",
          "--mask=nope.png", timeout=120))
