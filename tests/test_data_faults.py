"""Faults in real-video data (issue 19 items 6 and 8): unreadable clips are remembered and
never stop training, across a resume; a folder of over 100 bad files of every kind is
scanned by prepare_data with no crash, every bad file counted by reason and bounded memory."""
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib

import av
import numpy as np
import pytest

from conftest import REPO, tiny_config, word_features
from videogen import video_io
from videogen.data import pipeline, videos
from videogen.data.manifest import read_manifest, write_manifest
from videogen.training import loop
from videogen.training.metrics import read_metrics


def _clip(frames=6, size=16, seed=0):
  rng = np.random.default_rng(seed)
  video = np.zeros((frames, size, size, 3), np.uint8)
  for t in range(frames):  # a moving bright square on a seed-coloured ground
    video[t] = rng.integers(0, 80, 3, dtype=np.uint8)
    video[t, 4:10, t:t + 6] = 255
  return video


def _row(path, frames=6, size=16, text="a white square moving right"):
  return {"path": path, "text": text, "num_frames": frames, "height": size, "width": size,
          "fps": 8}


@pytest.fixture(scope="module")
def twelve_good_six_truncated(tmp_path_factory):
  """The issue's manifest: 12 readable clips and 6 truncated files whose rows look fine."""
  folder = tmp_path_factory.mktemp("faulty")
  rows = []
  for i in range(18):
    path = str(folder / f"clip{i:02d}.mp4")
    video_io.write_video(path, _clip(seed=i), fps=8)
    if i % 3 == 2:  # every third file loses its second half (and the mp4 index with it)
      data = open(path, "rb").read()
      open(path, "wb").write(data[:len(data) // 2])
    rows.append(_row(path))
  write_manifest(str(folder / "clips.csv"), rows)
  return str(folder / "clips.csv")


def _config(manifest, **overrides):
  # No data.buckets: the one bucket is the config's own 4 x 16 x 16 at train.batch_size 4.
  return tiny_config(**{"data.source": "videos", "data.manifest": manifest,
                        "train.batch_size": 4, "mesh.data": 4, "mesh.tensor": 2, **overrides})


def _warned_paths(record):
  return {str(w.message).split(": ")[1] for w in record if "skipped clip" in str(w.message)}


def test_unreadable_clips_are_remembered_and_never_stop_training_across_a_resume(
    twelve_good_six_truncated, tmp_path):
  config = _config(twelve_good_six_truncated, **{"train.num_steps": 6,
                                                 "checkpoint.every_steps": 100})
  workdir = str(tmp_path / "run")
  with warnings.catch_warnings(record=True) as first:
    warnings.simplefilter("always")
    loop.train(config, workdir, stop_after_step=3)
  state_files = [os.path.join(root, name) for root, _, names in os.walk(workdir)
                 for name in names if root.endswith(os.sep + "data") and name.endswith(".json")]
  saved = json.loads(open(state_files[0]).read())
  remembered = set(saved["unreadable"])
  assert remembered and remembered <= {i for i in range(18) if i % 3 == 2}
  assert saved["clips"] == 18
  with warnings.catch_warnings(record=True) as second:
    warnings.simplefilter("always")
    loop.train(config, workdir)
  metrics = [m for m in read_metrics(workdir) if "data_skipped" in m]
  assert [m["step"] for m in metrics] == list(range(1, 7))
  assert all(np.isfinite(m["loss"]) for m in metrics)
  # Nothing remembered before the resume is read again after it.
  first_paths, second_paths = _warned_paths(first), _warned_paths(second)
  assert len(first_paths) == len(remembered)
  assert not first_paths & second_paths
  assert metrics[-1]["data_unreadable"] <= 6 and metrics[-1]["data_skipped"] >= 1


def test_batches_do_not_depend_on_what_was_known_before(twelve_good_six_truncated):
  """A resumed iterator (unreadable clips known from its state) yields the batches of an
  uninterrupted one (which found them while reading); spares run out, rows still fill."""
  config = _config(twelve_good_six_truncated)
  straight = iter(pipeline.make_dataset(config, word_features(config)))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _ in range(3):
      next(straight)
    state = straight.get_state()
    want = [next(straight) for _ in range(6)]
    resumed = iter(pipeline.make_dataset(config, word_features(config)))
    resumed.set_state(state)
    assert resumed.get_state()["unreadable"] == state["unreadable"]
    got = [next(resumed) for _ in range(6)]
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a["video"], b["video"])
    assert list(a["caption"]) == list(b["caption"])
  assert all(b["video"].shape == (4, 4, 16, 16, 3) for b in got)


def test_a_bucket_whose_every_clip_is_unreadable_is_one_line(tmp_path):
  rows = []
  for i in range(4):  # a readable 16 px bucket, and a 32 px bucket of truncated files only
    good, bad = str(tmp_path / f"good{i}.mp4"), str(tmp_path / f"bad{i}.mp4")
    video_io.write_video(good, _clip(seed=i), fps=8)
    video_io.write_video(bad, _clip(size=32, seed=i), fps=8)
    open(bad, "r+b").truncate(300)
    rows += [_row(good), _row(bad, size=32)]
  write_manifest(str(tmp_path / "m.csv"), rows)
  config = _config(str(tmp_path / "m.csv"), **{"data.buckets.spec": "16x4:1:4,32x4:1:4",
                                               "data.buckets.aspect_ratios": (1.0,)})
  iterator = iter(pipeline.make_dataset(config, word_features(config)))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with pytest.raises(videos.UnreadableBucketError) as error:
      for _ in range(4):
        next(iterator)
  message = str(error.value)
  assert "\n" not in message and "bucket 4 frames x 32x32" in message and "bad" in message


# ---- prepare_data on a folder of bad files ----

def _png_bomb(path, side):
  """A grey PNG of side x side pixels that compresses to a few hundred kB."""
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  packer = zlib.compressobj(9)
  body = b"".join(packer.compress(b"\0" * (side + 1)) for _ in range(side)) + packer.flush()
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0,
                                                               0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _gif_bomb(path, side):
  """A 35-byte GIF whose one frame is side x side pixels (decoders fill it: ~4 bytes each)."""
  screen = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
  image = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x4c\x01\x00"
  with open(path, "wb") as f:
    f.write(screen + image + b";")


def _audio_only(path):
  with av.open(path, mode="w") as container:
    stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                       layout="mono")
    frame.sample_rate = 8000
    container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _fuzz_folder(folder):
  """Good clips (with captions, one not UTF-8, one a folder) plus over 100 bad files; returns
  (good file names, {reason: count})."""
  os.makedirs(folder)
  good = []
  for i in range(4):
    name = f"good{i}.mp4"
    video_io.write_video(os.path.join(folder, name), _clip(frames=8, seed=i), fps=8)
    good.append(name)
  (open(os.path.join(folder, "good0.txt"), "w")).write("a white square moving right")
  open(os.path.join(folder, "good1.txt"), "wb").write(b"caf\xe9 \xff\xfe square")  # Latin-1
  os.makedirs(os.path.join(folder, "good2.txt"))  # a "caption" that is a folder
  video_io.write_video(os.path.join(folder, "one_frame.mp4"), _clip(frames=1), fps=8)
  good.append("one_frame.mp4")
  reasons = {}
  rng = np.random.default_rng(0)
  whole = open(os.path.join(folder, "good0.mp4"), "rb").read()
  for i in range(41):
    open(os.path.join(folder, f"random{i}.mp4"), "wb").write(rng.bytes(int(rng.integers(1, 4000))))
  for i in range(30):
    open(os.path.join(folder, f"truncated{i}.mkv" if i % 2 else f"truncated{i}.mp4"),
         "wb").write(whole[:int(len(whole) * (i + 1) / 32)])
  for i in range(20):
    open(os.path.join(folder, f"zero{i}.webm"), "wb").close()
  reasons["empty"] = 20
  os.makedirs(os.path.join(folder, "x.mp4"))
  os.symlink("loop.mp4", os.path.join(folder, "loop.mp4"))
  os.symlink("nowhere.mp4", os.path.join(folder, "dangling.mp4"))
  os.mkfifo(os.path.join(folder, "fifo.mp4"))  # opening it would block forever
  reasons["not_a_file"] = 4
  _audio_only(os.path.join(folder, "audio.mkv"))
  _gif_bomb(os.path.join(folder, "bomb.gif"), 12000)
  reasons["too_large"] = 1
  _png_bomb(os.path.join(folder, "bomb_png.mp4"), 8000)  # an image, not a video demuxer
  open(os.path.join(folder, "playlist.mp4"), "w").write(
      "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
  open(os.fsencode(folder) + b"/bad\xff\xfename.mp4", "wb").write(whole)
  reasons["name_not_utf8"] = 1
  return good, reasons


_MEASURED = """
import resource, subprocess, sys
result = subprocess.run([sys.executable, "-m", "videogen.prepare_data", *sys.argv[1:]],
                        capture_output=True, text=True)
sys.stderr.write(result.stderr)
sys.stdout.write(result.stdout)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(result.returncode)
"""


def test_prepare_data_scans_a_folder_of_bad_files(tmp_path):
  folder = str(tmp_path / "fuzz")
  good, reasons = _fuzz_folder(folder)
  bad_files = 41 + 30 + 20 + 4 + 1 + 1 + 1 + 1 + 1
  assert bad_files >= 100
  output = str(tmp_path / "clips.csv")
  result = subprocess.run([sys.executable, "-c", _MEASURED, f"--input={folder}",
                           f"--output={output}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
  # Every good clip listed, with its caption (not UTF-8: replaced and counted).
  raw = open(output, "rb").read()
  raw.decode("utf-8")  # the manifest stays valid UTF-8
  clips, bad_rows = read_manifest(output)
  assert bad_rows == 0 and sorted(os.path.basename(c.path) for c in clips) == sorted(good)
  text = {os.path.basename(c.path): c.text for c in clips}
  assert text["good0.mp4"] == "a white square moving right"
  assert text["good1.mp4"] == "caf\ufffd \ufffd\ufffd square" and text["good2.mp4"] == ""
  # Every bad file counted, by reason.
  summary = [l for l in result.stdout.splitlines() if "unreadable files skipped" in l][0]
  counts = dict(item.split("=") for item in summary.split("(")[1].rstrip(")").split(", "))
  counts = {k: int(v) for k, v in counts.items()}
  assert sum(counts.values()) == bad_files
  assert f"{len(good)} clips, {bad_files} unreadable files skipped" in summary
  for reason, count in reasons.items():
    assert counts[reason] == count, (reason, counts)
  # Random bytes, truncated files, the PNG, the playlist and the audio: by what ffmpeg finds.
  assert sum(counts.get(k, 0) for k in ("not_a_video", "corrupt", "no_frames",
                                        "no_video_stream")) == 41 + 30 + 2 + 1
  for name, reason in [("audio.mkv", "no_video_stream"), ("bomb_png.mp4", "not_a_video"),
                       ("playlist.mp4", "not_a_video"), ("bomb.gif", "too_large"),
                       ("x.mp4", "not_a_file"), ("fifo.mp4", "not_a_file")]:
    assert f"skipped ({reason}): {os.path.join(folder, name)}" in result.stderr, name
  notes = [l for l in result.stdout.splitlines() if l.startswith("captions and folders")][0]
  assert "caption_not_utf8=1" in notes and "caption_unreadable=1" in notes
  assert "no_caption=3" in notes  # good2 (its caption is a folder), good3, one_frame
  assert "warning: 3 of 5 clips have no caption" in result.stderr
  # Bounded memory: the 12000² GIF alone takes ~580 MB when decoded.
  peak_mb = int(result.stdout.split("maxrss_kb")[1]) / 1024
  assert peak_mb < 250, peak_mb


def test_require_captions_makes_a_missing_caption_an_error(tmp_path):
  folder = tmp_path / "v"
  folder.mkdir()
  for i in range(2):
    video_io.write_video(str(folder / f"c{i}.mp4"), _clip(seed=i), fps=8)
  (folder / "c0.txt").write_text("a caption")
  output = str(tmp_path / "m.csv")
  result = subprocess.run([sys.executable, "-m", "videogen.prepare_data", f"--input={folder}",
                           f"--output={output}", "--require_captions"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and "1 of 2 readable clips" in lines[0]
  assert not os.path.exists(output)
