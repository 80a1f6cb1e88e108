"""Runs you can watch: each evaluation during training puts its sample videos and contact sheet
in TensorBoard and in WORKDIR/eval/step_N/videos, and `python -m videogen.report` turns a run
into one self-contained HTML page, checked by parsing it and in headless Chromium (every video
plays, every image loads). Uses the suite's shared run (`trained`: evaluated at steps 2, 4)."""
import base64
import glob
import html
import html.parser
import io
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import one_line_error, run_cli
from videogen import video_io

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# What a Debian Chromium needs to run headless as root on a closed network (no sandbox, no GPU,
# no calls home); each run gets a fresh profile.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
# Injected before </body>: waits for each <video> to decode its first frame (or fail), checks
# each <img> decoded, and writes the outcome as JSON into the DOM that --dump-dom prints.
PROBE = """<script>
(() => {
  const out = document.createElement("pre"); out.id = "media-probe"; document.body.append(out);
  const videos = [...document.querySelectorAll("video")];
  const images = [...document.querySelectorAll("img")];
  const seen = videos.map(() => null);
  const report = () => { out.textContent = JSON.stringify({
      videos: seen, images: images.map(i => i.complete && i.naturalWidth > 0)}); };
  videos.forEach((v, k) => {
    const done = (ok, why) => { if (seen[k] === null) seen[k] = {ok, why, w: v.videoWidth};
                                report(); };
    v.addEventListener("loadeddata", () => done(v.readyState >= 2 && v.videoWidth > 0, "data"));
    v.addEventListener("error", () => done(false, "error " + (v.error && v.error.code)));
    if (v.readyState >= 2 && v.videoWidth > 0) done(true, "ready");
  });
  report();
})();
</script>"""


def tensorboard_events(folder) -> list:
  """Every Event in a TensorBoard folder, read over the TFRecord framing (length, its CRC,
  payload, its CRC) with tensorboardX's protos: no TensorFlow needed."""
  from tensorboardX.proto.event_pb2 import Event
  events = []
  for file in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
    data = open(file, "rb").read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at:at + 8])
      events.append(Event.FromString(data[at + 12:at + 12 + length]))
      at += 12 + length + 4
  return events


class _Page(html.parser.HTMLParser):
  """The page's media sources, judge-table rows, curves and any external reference."""

  def __init__(self):
    super().__init__()
    self.videos, self.images, self.table_rows, self.curves, self.external = [], [], [], {}, []
    self.sections, self._curve = [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    for key in ("src", "href"):
      if attrs.get(key) and not attrs[key].startswith("data:") and tag != "svg":
        self.external.append(attrs[key])
    if tag == "video":
      self.videos.append(attrs["src"])
    elif tag == "img":
      self.images.append(attrs["src"])
    elif tag == "tr" and "data-step" in attrs:
      self.table_rows.append(int(attrs["data-step"]))
    elif tag == "section" and "data-step" in attrs:
      self.sections.append(int(attrs["data-step"]))
    elif tag == "svg":
      self._curve = attrs.get("data-metric")
    elif tag == "polyline" and self._curve:
      self.curves[self._curve] = len(attrs["points"].split())
    elif tag in ("script", "link", "iframe", "object"):
      self.external.append(tag)


def _decoded(uri: str, kind: str) -> bytes:
  head, _, payload = uri.partition(",")
  assert head == f"data:{kind};base64", head[:60]
  return base64.b64decode(payload, validate=True)


@pytest.fixture(scope="module")
def page(trained, tmp_path_factory):
  """The report page of the shared run (written beside it, not into it: it is read-only)."""
  output = tmp_path_factory.mktemp("report") / "run.html"
  result = run_cli("videogen.report", f"--workdir={trained}", f"--output={output}", check=True)
  assert result.stdout.strip() == f"wrote {output}: 4 logged steps, 2 evaluations", result.stdout
  return output


def test_evaluations_put_videos_and_the_contact_sheet_in_tensorboard_and_eval_dirs(trained):
  from PIL import Image
  for step in (2, 4):
    files = sorted(os.listdir(trained / "eval" / f"step_{step}" / "videos"))
    assert files == ["00.webm", "01.webm"]
    for name in files:  # 4 frames of 16×16, upscaled ×8 to stay visible
      video = video_io.read_video(str(trained / "eval" / f"step_{step}" / "videos" / name))
      assert video.shape == (4, 128, 128, 3)
  images, texts = {}, {}
  for event in tensorboard_events(trained / "tensorboard"):
    for value in event.summary.value:
      if value.HasField("image"):
        images.setdefault(value.tag, []).append((event.step, value.image))
      elif value.tag.startswith("eval/prompts"):
        texts.setdefault(event.step, value)
  assert set(images) == {"eval/contact_sheet", "eval/video/00", "eval/video/01"}, set(images)
  sheet = Image.open(trained / "eval" / "step_4" / "contact_sheet.png")
  for tag, logged in images.items():
    assert [step for step, _ in logged] == [2, 4], tag
    for _, image in logged:
      decoded = Image.open(io.BytesIO(image.encoded_image_string))
      assert decoded.size == (image.width, image.height)
      if tag == "eval/contact_sheet":
        assert decoded.format == "PNG" and decoded.size == sheet.size
      else:  # an animated GIF of every frame
        assert decoded.format == "GIF" and decoded.n_frames == 4 and decoded.size == (128, 128)
  assert sorted(texts) == [2, 4]


def test_report_page_is_self_contained_with_curves_judge_table_and_media(trained, page):
  parsed = _Page()
  parsed.feed(page.read_text())
  assert parsed.external == []  # nothing fetched, no script
  logged = [json.loads(line) for line in open(trained / "metrics.jsonl")]
  assert parsed.curves == {"loss": 4, "learning_rate": 4, "grad_norm": 4}
  assert len([row for row in logged if "loss" in row]) == 4
  assert parsed.table_rows == [2, 4] and parsed.sections == [4, 2]  # newest samples first
  assert len(parsed.videos) == 4 and len(parsed.images) == 2
  for number, uri in enumerate(parsed.videos):
    file = page.parent / f"v{number}.webm"
    file.write_bytes(_decoded(uri, "video/webm"))
    assert video_io.read_video(str(file)).shape == (4, 128, 128, 3)
  from PIL import Image
  for uri in parsed.images:
    assert Image.open(io.BytesIO(_decoded(uri, "image/png"))).size[0] > 0
  text = page.read_text()
  report = json.load(open(trained / "eval" / "step_4" / "report.json"))
  assert html.escape(report["per_video"][0]["prompt"]) in text
  assert f"{report['synthetic']['overall']:.4g}" in text
  assert "&quot;num_steps&quot;: 4" in text  # the saved config


def test_report_missing_or_empty_workdir_is_one_line(tmp_path):
  assert "does not exist" in one_line_error(
      run_cli("videogen.report", f"--workdir={tmp_path}/nope", timeout=60))
  assert "holds no run" in one_line_error(
      run_cli("videogen.report", f"--workdir={tmp_path}", timeout=60))
  assert not os.path.exists(tmp_path / "report.html")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (the Makefile's test install "
                    "adds Debian's chromium where apt-get runs as root); the page's structure "
                    "is checked by the test above")
def test_report_page_plays_every_video_and_loads_every_image_in_headless_chromium(page,
                                                                                 tmp_path):
  probed = tmp_path / "probed.html"
  probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
  result = subprocess.run(
      [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
       "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
      capture_output=True, text=True, timeout=90)
  assert result.returncode == 0, result.stderr[-2000:]
  start = result.stdout.index('<pre id="media-probe">') + len('<pre id="media-probe">')
  outcome = json.loads(html.unescape(result.stdout[start:result.stdout.index("</pre>", start)]))
  assert len(outcome["videos"]) == 4 and len(outcome["images"]) == 2, outcome
  assert all(video and video["ok"] and video["w"] == 128 for video in outcome["videos"]), outcome
  assert all(outcome["images"]), outcome
