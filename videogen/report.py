"""One self-contained HTML page about a training run, to read or send without TensorBoard.

    python -m videogen.report --workdir DIR [--output DIR/report.html]

The page holds the run's config (saved with its latest checkpoint), the loss, learning-rate
and gradient-norm curves from `metrics.jsonl` as inline SVG, the judge's figures at each
evaluation during training (`eval/step_N/report.json`) as one table row per step, and each
evaluation's sample videos (`videos/NN.webm`) and contact sheet embedded as `data:` URIs.
Nothing is fetched and no script runs: the file opens offline in any browser. `DIR` may be a
bucket path (`gs://…`), read through `etils.epath` (videogen/workdir.py).
"""
import base64
import html
import json
import math
import sys

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to report on.")
_OUTPUT = flags.DEFINE_string("output", None, "The HTML file to write (default: "
                              "WORKDIR/report.html).")

CURVES = (("loss", "loss"), ("learning_rate", "learning rate"), ("grad_norm", "gradient norm"))
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.wide { overflow-x: auto; } table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: .25em .6em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
.curves { display: flex; flex-wrap: wrap; gap: 1em; } .curve text { font-size: 11px; }
.videos { display: flex; flex-wrap: wrap; gap: .8em; }
figure { margin: 0; width: 160px; } figure video { width: 160px; image-rendering: pixelated; }
figcaption { font-size: 12px; } .pass { color: #080; } .fail { color: #c00; }
.sheet { max-width: 100%; image-rendering: pixelated; }
pre { background: #f6f6f6; padding: 1em; max-height: 30em; overflow: auto; font-size: 12px; }
"""


def _evaluations(workdir) -> list[dict]:
  """Each `eval/step_N` folder, in step order: its step, report, contact sheet and videos
  (bytes; None/[] where absent)."""
  from videogen import workdir as workdir_lib
  evaluations = []
  for step, folder in workdir_lib.eval_steps(workdir):
    report = workdir_lib.eval_report_file(folder)
    sheet = workdir_lib.contact_sheet_file(folder)
    videos = workdir_lib.eval_video_files(folder)
    evaluations.append({
        "step": step,
        "report": workdir_lib.read_json(report) if report.is_file() else {},
        "sheet": sheet.read_bytes() if sheet.is_file() else None,
        "videos": [video.read_bytes() for video in videos]})
  return evaluations


def _config_json(workdir) -> str | None:
  """The config saved with the latest checkpoint, as JSON; None when there is none."""
  from videogen import checkpoints
  try:
    config = checkpoints.load_config(workdir)
  except (FileNotFoundError, ValueError):
    return None
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def _data_uri(kind: str, payload: bytes) -> str:
  return f"data:{kind};base64,{base64.b64encode(payload).decode('ascii')}"


def _number(value) -> str:
  return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def svg_curve(name: str, title: str, rows: list[dict], width: int = 340,
              height: int = 170) -> str:
  """An inline SVG line chart of `name` over `step` (finite values only), with its range
  written on the axes; an empty string when no row has the metric."""
  points = [(row["step"], float(row[name])) for row in rows
            if isinstance(row.get(name), (int, float)) and math.isfinite(row[name])]
  if not points:
    return ""
  left, right, top, bottom = 52, 10, 20, 22
  steps, values = [p[0] for p in points], [p[1] for p in points]
  x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
  y0, y1 = min(values), max(values) if max(values) > min(values) else min(values) + 1
  x = lambda s: left + (s - x0) / (x1 - x0) * (width - left - right)
  y = lambda v: top + (y1 - v) / (y1 - y0) * (height - top - bottom)
  line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
  axis = height - bottom
  return (f'<svg class="curve" data-metric="{name}" xmlns="http://www.w3.org/2000/svg" '
          f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
          f'<text x="{left}" y="13" font-weight="bold">{html.escape(title)}</text>'
          f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis}" stroke="#888"/>'
          f'<line x1="{left}" y1="{axis}" x2="{width - right}" y2="{axis}" stroke="#888"/>'
          f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{y1:.3g}</text>'
          f'<text x="{left - 4}" y="{axis}" text-anchor="end">{y0:.3g}</text>'
          f'<text x="{left}" y="{height - 6}">{x0}</text>'
          f'<text x="{width - right}" y="{height - 6}" text-anchor="end">step {x1}</text>'
          f'<polyline fill="none" stroke="#1f6fb4" stroke-width="1.5" points="{line}"/>'
          + "".join(f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="2" fill="#1f6fb4"/>'
                    for s, v in points if len(points) <= 40) + "</svg>")


def _judge_table(evaluations: list[dict]) -> str:
  from videogen.eval.report import scalars
  figures = [scalars(e["report"], prefix="") for e in evaluations]
  columns = sorted({k for row in figures for k in row},
                   key=lambda k: (not k.startswith("synthetic_overall"), k))
  if not evaluations:
    return "<p>No evaluation during training (set <code>--config.eval.every_steps=N</code>).</p>"
  head = "".join(f"<th>{html.escape(c)}</th>" for c in ["step", "videos", *columns])
  body = "".join(
      f'<tr data-step="{e["step"]}"><td>{e["step"]}</td>'
      f'<td>{e["report"].get("num_videos", len(e["videos"]))}</td>'
      + "".join(f"<td>{_number(row[c]) if c in row else '–'}</td>" for c in columns) + "</tr>"
      for e, row in zip(evaluations, figures))
  return f'<div class="wide"><table class="judge"><tr>{head}</tr>{body}</table></div>'


def _verdict(video: dict | None) -> str:
  if not video:
    return ""
  failed = [k for k, ok in video.get("checks", {}).items() if not ok]
  return ('<span class="fail">fail: ' + html.escape(", ".join(failed)) + "</span>" if failed
          else '<span class="pass">pass</span>')


def _evaluation_section(evaluation: dict) -> str:
  per_video = evaluation["report"].get("per_video") or []
  figures = []
  for number, payload in enumerate(evaluation["videos"]):
    video = per_video[number] if number < len(per_video) else None
    prompt = html.escape(video["prompt"]) if video else f"video {number:02d}"
    figures.append(f'<figure><video src="{_data_uri("video/webm", payload)}" controls loop '
                   f'muted autoplay playsinline></video><figcaption>{number:02d}: {prompt}'
                   f'<br>{_verdict(video)}</figcaption></figure>')
  sheet = (f'<p><img class="sheet" alt="contact sheet at step {evaluation["step"]}" '
           f'src="{_data_uri("image/png", evaluation["sheet"])}"></p>'
           if evaluation["sheet"] else "")
  videos = f'<div class="videos">{"".join(figures)}</div>' if figures else (
      "<p>No sample videos saved at this step.</p>")
  return (f'<section class="evaluation" data-step="{evaluation["step"]}">'
          f'<h3>Step {evaluation["step"]}</h3>{videos}{sheet}</section>')


def render(workdir: str, rows: list[dict], evaluations: list[dict], config: str | None) -> str:
  """The page's HTML."""
  curves = "".join(svg_curve(name, title, rows) for name, title in CURVES)
  last = rows[-1]["step"] if rows else 0
  return "".join([
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
      f"<title>videogen run {html.escape(str(workdir))}</title><style>{STYLE}</style></head>",
      f"<body><h1>videogen run</h1><p><code>{html.escape(str(workdir))}</code>: "
      f"metrics logged up to step {last}, {len(evaluations)} evaluations.</p>",
      "<h2>Training curves</h2>",
      f'<div class="curves">{curves}</div>' if curves else "<p>No metrics logged yet.</p>",
      "<h2>Judge over steps</h2>", _judge_table(evaluations),
      "<h2>Samples per evaluation</h2>", *map(_evaluation_section, reversed(evaluations)),
      "<h2>Config</h2>",
      f'<pre class="config">{html.escape(config)}</pre>' if config else
      "<p>No config saved (no checkpoint yet).</p>",
      "</body></html>\n"])


def write_report(workdir: str, output: str | None = None) -> tuple[str, int, int]:
  """Writes the page (default WORKDIR/report.html); returns (its path, logged training steps,
  evaluations). FileNotFoundError for a missing workdir or one that holds no run."""
  from videogen import workdir as workdir_lib
  root = workdir_lib.path(workdir)
  if not root.is_dir():
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  from videogen.training.metrics import read_metrics
  rows = read_metrics(workdir)
  evaluations = _evaluations(workdir)
  config = _config_json(workdir) if workdir_lib.checkpoints(workdir).is_dir() else None
  if not (rows or evaluations or config):
    raise FileNotFoundError(f"workdir {workdir} holds no run (no metrics.jsonl, checkpoint or "
                            f"eval/step_N): train into it first")
  target = workdir_lib.path(output) if output else workdir_lib.report_page(workdir)
  target.parent.mkdir(parents=True, exist_ok=True)
  with workdir_lib.local_target(target) as file:
    with open(file, "w", encoding="utf-8") as f:
      f.write(render(workdir, rows, evaluations, config))
  return str(target), len({row["step"] for row in rows if "loss" in row}), len(evaluations)


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  if not _WORKDIR.value:
    exit_with_error("pass --workdir DIR (a training directory)")
  try:
    written, rows, evaluations = write_report(_WORKDIR.value, _OUTPUT.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e))
  print(f"wrote {written}: {rows} logged steps, {evaluations} evaluations")


if __name__ == "__main__":
  main(sys.argv)
