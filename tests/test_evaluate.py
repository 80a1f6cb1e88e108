"""Evaluation without a model: `videogen.evaluate --videos MANIFEST` judges files on disk, and
the report's FVD compares I3D statistics (zero for identical sets)."""
import csv
import json

import numpy as np
import pytest

from conftest import one_line_error, run_cli
from videogen import video_io
from videogen.data import synthetic, synthetic_grammar
from videogen.eval import report as report_lib

WORLD = synthetic.World(num_frames=16, height=48, width=48)


def _manifest(folder, videos, texts, name="clips.csv"):
  with open(folder / name, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "text"])
    for i, (video, text) in enumerate(zip(videos, texts)):
      video_io.write_video(str(folder / f"{name}_{i}.gif"), video)
      writer.writerow([f"{name}_{i}.gif", text])
  return folder / name


def test_judges_video_files_from_a_manifest(tmp_path):
  prompts = synthetic_grammar.prompt_suite(WORLD, 6)
  videos = [synthetic.render_prompt(p, WORLD, seed=i).video for i, p in enumerate(prompts)]
  right = _manifest(tmp_path, videos, prompts)
  wrong = _manifest(tmp_path, videos, prompts[1:] + prompts[:1], "wrong.csv")
  reports = [json.loads(run_cli("videogen.evaluate", f"--videos={m}",
                                "--metrics=synthetic,flicker,warping",
                                check=True).stdout.strip().splitlines()[-1])
             for m in (right, wrong)]
  print({k: v for k, v in reports[0]["synthetic"].items() if k != "stated"},
        reports[0]["warping_error"], reports[1]["synthetic"]["overall"])
  assert reports[0]["synthetic"]["overall"] == 1.0
  assert reports[1]["synthetic"]["overall"] == 0.0
  assert len(reports[0]["per_video"]) == 6
  # With no --output_dir, the report and the labelled sheet go beside the manifest.
  assert (tmp_path / "clips_eval" / "report.json").is_file()
  assert (tmp_path / "wrong_eval" / "contact_sheet.png").is_file()
  assert reports[0]["warping_error"] < 0.01 < reports[0]["flicker"]


def test_bad_manifests_are_one_line_errors(tmp_path):
  (tmp_path / "broken.gif").write_bytes(b"GIF89a not really")
  bad = tmp_path / "bad.csv"
  bad.write_text("path,text\nbroken.gif,a red circle moving left\n")
  assert "row 1" in one_line_error(run_cli("videogen.evaluate", f"--videos={bad}", timeout=60))
  assert "does not exist" in one_line_error(
      run_cli("videogen.evaluate", f"--videos={tmp_path}/none.csv", timeout=60))
  still = _manifest(tmp_path, [np.zeros((1, 16, 16, 3), np.uint8)], ["a red circle moving up"],
                    "still.csv")
  assert "want (T ≥ 2" in one_line_error(run_cli("videogen.evaluate", f"--videos={still}",
                                                 timeout=60))


def test_missing_fvd_and_clip_weights_say_how_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError, match="convert --from pytorch-i3d"):
    report_lib.check(report_lib.Settings(("fvd",), i3d_weights=str(tmp_path / "i3d.pt")))
  with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
    report_lib.check(report_lib.Settings(("clip",), clip_model=str(tmp_path / "clip")))
  with pytest.raises(ValueError, match="unknown"):
    report_lib.check(report_lib.Settings(("fid",)))


def test_fvd_is_zero_for_identical_sets_and_grows_with_distortion(tmp_path):
  from conftest import write_random_i3d
  weights = write_random_i3d(str(tmp_path / "i3d.safetensors"))
  settings = report_lib.Settings(("fvd",), weights, i3d_size=32, batch_size=8)
  world = synthetic.World(num_frames=8, height=32, width=32)
  prompts = synthetic_grammar.prompt_suite(world, 8)
  real = [synthetic.render_prompt(p, world, seed=i).video for i, p in enumerate(prompts)]
  noisy = [np.clip(v + np.random.default_rng(i).normal(0, 40, v.shape), 0, 255).astype(np.uint8)
           for i, v in enumerate(real)]
  same = report_lib.evaluate_videos(real, prompts, settings, reference=real)["fvd"]
  distorted = report_lib.evaluate_videos(noisy, prompts, settings, reference=real)["fvd"]
  print(f"FVD identical {same:.3g}, noisy {distorted:.3g}")
  assert abs(same) < 1e-4 * distorted and distorted > 0
  with pytest.raises(ValueError, match="one shape"):
    report_lib.evaluate_videos([real[0], real[1][:4]], prompts[:2], settings, reference=real)
