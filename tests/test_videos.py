"""Real video files (written here with PyAV, one corrupt): probing and windowed decoding,
prepare_data, manifests and filters, bucket assignment, bucketed batches across processes,
resume, progressive stages, skipped clips and the compile count."""
import json
import os
import warnings

import numpy as np
import pytest

from conftest import run_cli, tiny_config, word_features
from videogen import video_io
from videogen.data import buckets, pipeline, synthetic, videos
from videogen.data.manifest import ManifestError, read_manifest, write_manifest
from videogen.data.prepare import describe, motion_score
from videogen.training import loop
from videogen.training.metrics import read_metrics

# (frames, height, width, count): two shape groups so two buckets fill.
GROUPS = [(12, 48, 48, 6), (10, 24, 32, 6)]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
  """Synthetic-world clips as mp4 files with sidecar captions, plus a corrupt file."""
  folder = tmp_path_factory.mktemp("videos")
  index = 0
  for frames, height, width, count in GROUPS:
    world = synthetic.World(num_frames=frames, height=height, width=width)
    for _ in range(count):
      clip = synthetic.render_clip(world, 0, index)
      video_io.write_video(str(folder / f"clip{index:02d}.mp4"), clip.video, fps=8)
      (folder / f"clip{index:02d}.txt").write_text(clip.caption)
      index += 1
  # Seeded: FFmpeg parses these bytes in-process, and a test's input must not change per run.
  (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42"
                                       + np.random.default_rng(0).bytes(2000))
  return folder


@pytest.fixture(scope="module")
def manifest(video_dir, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("manifest") / "clips.csv")
  result = run_cli("videogen.prepare_data", f"--input={video_dir}", f"--output={path}",
                   check=True)
  assert "12 clips, 1 unreadable files skipped" in result.stdout
  return path


def video_config(manifest_path, **overrides):
  sizes = {"32": {"8": (1.0, 4)}, "16": {"8": (1.0, 4)}}
  return tiny_config(**{"data.source": "videos", "data.manifest": manifest_path,
                        "data.buckets.sizes": sizes, "data.buckets.aspect_ratios": (1.0,),
                        "model.patch_size": (2, 8, 8), **overrides})


def test_windowed_decoding_is_frame_exact(tmp_path):
  frames = np.zeros((30, 16, 48, 3), np.uint8)
  for t in range(30):
    frames[t, :, t:t + 1] = 255  # a bright column at x = t
  path = str(tmp_path / "bar.mp4")
  video_io.write_video(path, frames, fps=10)
  assert video_io.probe(path) == video_io.VideoInfo(30, 10.0, 16, 48)
  window = video_io.read_frames(path, start=17, count=5, stride=2)
  assert [int(f[8].mean(-1).argmax()) for f in window] == [17, 19, 21, 23, 25]
  with pytest.raises(video_io.VideoReadError, match="wanted 5 frames from 25"):
    video_io.read_frames(path, start=25, count=5, stride=2)


def test_prepare_data_measures_each_clip(manifest, video_dir):
  clips, skipped = read_manifest(manifest)
  assert skipped == 0 and len(clips) == 12
  by_name = {os.path.basename(c.path): c for c in clips}
  first = by_name["clip00.mp4"]
  assert (first.num_frames, first.height, first.width, first.fps) == (12, 48, 48, 8.0)
  assert first.text == (video_dir / "clip00.txt").read_text()
  assert first.score("motion") > 1.0  # a moving object
  still = np.repeat(synthetic.render_clip(synthetic.World(), 0, 0).video[:1], 8, axis=0)
  assert motion_score(still) == 0.0


def test_bad_manifest_rows_are_counted_and_a_missing_manifest_is_named(tmp_path, manifest):
  rows = [{"path": "a.mp4", "text": "x", "num_frames": 8, "height": 32, "width": 32, "fps": 8},
          {"path": "b.mp4", "text": "y", "num_frames": "many", "height": 32, "width": 32,
           "fps": 8},
          {"path": "c.mp4", "text": "z", "num_frames": 8, "height": 32, "width": 32, "fps": ""}]
  write_manifest(str(tmp_path / "m.csv"), rows)
  with pytest.warns(UserWarning, match="row 2 skipped"):
    clips, skipped = read_manifest(str(tmp_path / "m.csv"))
  assert (len(clips), skipped) == (1, 2)
  with pytest.raises(ManifestError, match="does not exist"):
    read_manifest(str(tmp_path / "none.csv"))
  result = run_cli("videogen.train", "--config", "configs/tiny.py:test", "--workdir",
                   str(tmp_path / "run"), "--config.data.source=videos",
                   f"--config.data.manifest={tmp_path / 'none.csv'}")
  assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_bucket_assignment_snaps_ratio_never_upscales_and_keeps_by_probability():
  spec = buckets.BucketSpec.from_config(
      {"256": {"17": (1.0, 8), "49": (1.0, 2)}, "512": {"17": (1.0, 4)}},
      aspect_ratios=(9 / 16, 1.0, 16 / 9), multiple=16, frame_stride=1)
  rng = np.random.default_rng(0)
  # 720p landscape, 60 frames: the 512 bucket at 9:16 (h/w), its one frame count.
  assert spec.assign(60, 720, 1280, rng) == buckets.Bucket(17, 384, 688, 4)
  # 300×300, 60 frames: too small for 512², so 256² square with the longest frames that fit.
  assert spec.assign(60, 300, 300, rng) == buckets.Bucket(49, 256, 256, 2)
  assert spec.assign(20, 300, 300, rng) == buckets.Bucket(17, 256, 256, 8)
  assert spec.assign(10, 300, 300, rng) is None  # shorter than every bucket
  assert spec.assign(60, 100, 100, rng) is None  # smaller than every bucket
  half = buckets.BucketSpec.from_config({"256": {"17": (0.5, 8)}}, (1.0,), 16, 1)
  kept = sum(half.assign(20, 256, 256, np.random.default_rng(i)) is not None
             for i in range(400))
  assert 160 < kept < 240


def test_batches_have_one_bucket_shape_split_disjointly_over_processes(manifest):
  config = video_config(manifest)
  whole = iter(pipeline.make_dataset(config, word_features(config), 0, 1))
  halves = [iter(pipeline.make_dataset(config, word_features(config), p, 2)) for p in (0, 1)]
  seen = set()
  for _ in range(6):
    batch = next(whole)
    parts = [next(h) for h in halves]
    assert batch["video"].shape[0] == 4 and batch["video"].shape[1] == 8
    seen.add(batch["video"].shape)
    # Each process decodes its own half of the rows; together they are the global batch.
    for key in ("video", "tokens", "caption"):
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), batch[key])
  assert seen == {(4, 8, 32, 32, 3), (4, 8, 16, 16, 3)}


def test_clips_no_bucket_takes_are_counted(manifest, capsys):
  config = video_config(manifest, **{"data.buckets.sizes": {"32": {"8": (1.0, 4)}}})
  batch = next(iter(pipeline.make_dataset(config, word_features(config))))
  assert "warning: 6 of 12 clips fit no bucket" in capsys.readouterr().err
  assert int(batch["unfit"]) == 6 and batch["video"].shape[2:4] == (32, 32)


def test_without_buckets_the_bucket_is_the_configs_own_clip_shape(manifest, capsys):
  config = tiny_config(**{"data.source": "videos", "data.manifest": manifest,
                          "data.num_frames": 8, "data.height": 40, "data.width": 24,
                          "train.batch_size": 4})
  batch = next(iter(pipeline.make_dataset(config, word_features(config))))
  assert batch["video"].shape == (4, 8, 40, 24, 3)  # exact: no ratio snapping, no rounding
  # The 24x32 clips have fewer pixels than 40x24 would need: never upscaled, one line.
  assert "warning: 6 of 12 clips fit no bucket" in capsys.readouterr().err


def test_bucket_spec_flag_form_and_files(tmp_path, manifest):
  want = {"32": {"8": (1.0, 2)}, "64": {"16": (0.5, 1), "8": (1.0, 6)}}
  assert buckets.parse_spec("32x8:1.0:2,64x16:0.5:1, 64x8", 6) == want
  (tmp_path / "b.json").write_text(json.dumps(want))
  (tmp_path / "b.yaml").write_text("32: {8: [1.0, 2]}\n64: {16: [0.5, 1], 8: [1.0, 6]}\n")
  for name in ("b.json", "b.yaml"):
    got = buckets.parse_spec(str(tmp_path / name), 6)
    assert {str(r): {str(f): tuple(v) for f, v in fs.items()} for r, fs in got.items()} == want
  # The flag form feeds the same batches as the dict form.
  by_spec = video_config(manifest, **{"data.buckets.sizes": {},
                                      "data.buckets.spec": "32x8:1:4,16x8:1:4"})
  by_dict = video_config(manifest)
  a = iter(pipeline.make_dataset(by_spec, word_features(by_spec)))
  b = iter(pipeline.make_dataset(by_dict, word_features(by_dict)))
  for _ in range(3):
    np.testing.assert_array_equal(next(a)["video"], next(b)["video"])
  from videogen.config import ConfigError
  for spec, match in [("32x8:1.5", "KEEP in"), ("32by8", "not RESxFRAMES"),
                      (str(tmp_path / "none.yaml"), "does not exist")]:
    with pytest.raises(ConfigError, match=match):
      videos.bucket_stages(video_config(manifest, **{"data.buckets.sizes": {},
                                                     "data.buckets.spec": spec}))
  (tmp_path / "bad.json").write_text('{"32": {"8": [1.0, 0]}}')
  with pytest.raises(ConfigError, match="batch >= 1"):
    videos.bucket_stages(video_config(manifest, **{"data.buckets.sizes": {},
                                                   "data.buckets.spec": str(tmp_path / "bad.json")}))
  with pytest.raises(ConfigError, match="both set"):
    videos.bucket_stages(video_config(manifest, **{"data.buckets.spec": "32x8"}))


@pytest.mark.parametrize("spec, expected", [
    ("64x8:1:8", "none of its 12 clips fits a bucket"),  # clips are at most 48x48
    ("32x8:1:16", "too few clips for one batch: 8x32x32 has 6 clips for batch 16")])
def test_first_try_mistakes_are_one_line_before_compiling(manifest, tmp_path, spec, expected):
  result = run_cli("videogen.train", "--config", "configs/tiny.py:test", "--workdir",
                   str(tmp_path / "run"), "--config.data.source=videos",
                   f"--config.data.manifest={manifest}", f"--config.data.buckets.spec={spec}")
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
  assert len(errors) == 1 and expected in errors[0], result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before the first step


def test_iterator_resumes_exactly(manifest):
  config = video_config(manifest)
  iterator = iter(pipeline.make_dataset(config, word_features(config)))
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  want = [next(iterator) for _ in range(3)]
  resumed = iter(pipeline.make_dataset(config, word_features(config)))
  resumed.set_state(state)
  for expected in want:
    np.testing.assert_array_equal(next(resumed)["video"], expected["video"])


def test_progressive_stages_switch_by_step_and_resume_into_the_right_stage(manifest):
  config = video_config(manifest, **{"train.stages": (
      (0, {"16": {"8": (1.0, 4)}}), (3, {"32": {"8": (1.0, 4)}}))})
  iterator = iter(pipeline.make_dataset(config, word_features(config)))
  sizes = [next(iterator)["video"].shape[2] for _ in range(4)]
  assert sizes == [16, 16, 32, 32]  # steps 1, 2 in stage one; steps 3, 4 in stage two


def test_corrupt_clips_are_replaced_and_counted(manifest, video_dir, tmp_path):
  clips, _ = read_manifest(manifest)
  rows = [{"path": c.path, "text": c.text, "num_frames": c.num_frames, "height": c.height,
           "width": c.width, "fps": c.fps} for c in clips]
  rows[0] = {**rows[0], "path": str(video_dir / "corrupt.mp4")}  # plausible row, bad file
  rows.append({**rows[1], "num_frames": "?"})  # a malformed row
  write_manifest(str(tmp_path / "with_corrupt.csv"), rows)
  config = video_config(str(tmp_path / "with_corrupt.csv"))
  iterator = iter(pipeline.make_dataset(config, word_features(config)))
  with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    batches = [next(iterator) for _ in range(6)]
  assert sum(int(b["skipped"]) for b in batches) >= 1
  assert all(b["video"].shape[0] == 4 and int(b["bad_rows"]) == 1 for b in batches)


def test_training_compiles_once_per_bucket_shape(manifest, tmp_path):
  config = video_config(manifest, **{"train.num_steps": 6, "checkpoint.every_steps": 6,
                                     "train.log_every": 6, "mesh.data": 4,
                                     "mesh.tensor": 2})
  loop.train(config, str(tmp_path / "run"))
  row = [m for m in read_metrics(str(tmp_path / "run")) if "compiles" in m][-1]
  assert row["compiles"] == 2 and row["data_skipped"] == 0 and row["data_unfit"] == 0
  # And the jitted step itself holds exactly one program per shape after repeats. On the
  # run's own mesh: the persistent compilation cache then serves its init and both programs.
  from test_train import _trainer
  import jax
  state, step, mesh = _trainer(config, jax.devices()[:8])
  iterator = iter(pipeline.make_dataset(config, word_features(config)))
  with jax.set_mesh(mesh):
    for _ in range(6):
      batch = pipeline.to_global_batch(next(iterator), pipeline_sharding(mesh))
      state, _ = step(state, batch)
  assert step.jitted._cache_size() == 2


def pipeline_sharding(mesh):
  from videogen.parallel import mesh as mesh_lib
  return mesh_lib.batch_sharding(mesh)


def test_describe_reports_aspect_and_user_scores(video_dir):
  row = describe(str(video_dir / "clip06.mp4"), "t",
                 scorer=lambda frames, path: {"aesthetic": frames.mean() / 255})
  assert row["aspect_ratio"] == 0.75 and 0 <= row["aesthetic"] <= 1
  assert json.dumps(row)  # plain data


def test_data_benchmark_reports_input_and_train_rates():
  # Batch 8: the suite's 8 fake devices split it (the benchmark uses every device).
  result = run_cli("videogen.bench", "data", "--buckets=128x5", "--clips=8", "--batches=2",
                   "--batch_size=8", "--train_config=configs/tiny.py:test", "--train_steps=1",
                   check=True)
  row = json.loads(result.stdout.strip().splitlines()[-1])
  assert row["bucket"] == "128x5"
  slower = "input" if row["input_clips_per_s"] < row["train_clips_per_s"] else "compute"
  assert row["bottleneck"] == slower


def test_data_benchmark_times_a_configs_synthetic_clips_against_its_step():
  result = run_cli("videogen.bench", "data", "--synthetic=configs/tiny.py:test", "--batches=2",
                   "--train_steps=1", check=True)
  row = json.loads(result.stdout.strip().splitlines()[-1])
  assert row["config"] == "configs/tiny.py:test" and row["batch"] == 8
  assert row["input_core_s_per_step"] == pytest.approx(8 / row["input_clips_per_s_one_thread"],
                                                       rel=0.02)
  assert row["step_s"] == pytest.approx(8 / row["train_clips_per_s"], rel=0.02)


def test_tfds_dataset_built_from_the_manifest_feeds_the_same_frames(manifest, tmp_path):
  """prepare_data's TFDS build (ArrayRecord) read back through `data.source=tfds`: the same
  clips, frame for frame (PNG frames are lossless), bucketed like the files."""
  pytest.importorskip("tensorflow")
  from videogen.data import tfds_source
  data_dir = str(tmp_path / "tfds")
  assert tfds_source.build_from_manifest(manifest, data_dir) == 12
  config = video_config(manifest, **{"data.source": "tfds", "data.tfds.data_dir": data_dir})
  tfds_clips, reader = tfds_source.load_clips(config.data.tfds), tfds_source.TfdsReader(
      config.data.tfds)
  files, _ = read_manifest(manifest)
  assert sorted(c.path for c in tfds_clips) == sorted(c.path for c in files)
  clip = tfds_clips[3]
  np.testing.assert_array_equal(reader(3, 2, 4, 2),
                                video_io.read_frames(clip.path, 2, 4, 2))
  batch = next(iter(pipeline.make_dataset(config, word_features(config))))
  assert batch["video"].shape[:2] == (4, 8) and int(batch["skipped"]) == 0
