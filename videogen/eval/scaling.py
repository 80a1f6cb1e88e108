"""Loss-vs-compute power laws for a sweep of runs (used by `python -m videogen.scaling_fit`).

Each run's training compute is `step × train-step FLOPs` (the analytic per-layout counter at
the run's own config and batch). The fit is least squares in log-log space, `L = a · C^(−b)`.
Pure: the entry point reads each run's config and metrics.
"""
import numpy as np
from PIL import Image, ImageDraw

from videogen.models.flops import dit_forward_flops, train_step_flops
from videogen.models.text_to_video import spec_from_config


def flops_per_step(config) -> float:
  data = config.data
  forward = dit_forward_flops(spec_from_config(config.model), data.num_frames, data.height,
                              data.width, config.text.max_length, config.model.text_dim,
                              config.train.batch_size)
  return float(train_step_flops(forward))


def run_curve(config, metrics: list[dict], workdir: str) -> tuple[list[float], list[float]]:
  """(compute, loss) at each logged step of one run (its config and metrics rows)."""
  per_step = flops_per_step(config)
  rows = [m for m in metrics if "loss" in m]
  if len(rows) < 3:
    raise ValueError(f"{workdir} has {len(rows)} logged losses; need at least 3")
  return [m["step"] * per_step for m in rows], [m["loss"] for m in rows]


def fit_power_law(compute, loss) -> tuple[float, float]:
  """Least squares `log L = log a − b log C` → (a, b)."""
  slope, intercept = np.polyfit(np.log(compute), np.log(loss), 1)
  return float(np.exp(intercept)), float(-slope)


def plot(curves: dict, fit: tuple[float, float], path: str, size=(640, 440)) -> None:
  """Log-log loss-vs-compute curves and the fitted line, drawn with PIL."""
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  left, top, right, bottom = 70, 20, size[0] - 20, size[1] - 50
  xs = np.log10([c for cs, _ in curves.values() for c in cs])
  ys = np.log10([v for _, ls in curves.values() for v in ls])
  x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()

  def to_px(c, v):
    return (left + (np.log10(c) - x0) / (x1 - x0 + 1e-12) * (right - left),
            bottom - (np.log10(v) - y0) / (y1 - y0 + 1e-12) * (bottom - top))

  draw.rectangle([left, top, right, bottom], outline="black")
  palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
  for k, (name, (cs, ls)) in enumerate(curves.items()):
    colour = palette[k % len(palette)]
    draw.line([to_px(c, v) for c, v in zip(cs, ls)], fill=colour, width=2)
    draw.text((left + 8, top + 8 + 14 * k), name, fill=colour)
  a, b = fit
  grid = np.logspace(x0, x1, 50)
  line = [to_px(c, a * c ** -b) for c in grid if y0 <= np.log10(a * c ** -b) <= y1]
  if len(line) > 1:
    draw.line(line, fill="black", width=1)
  draw.text((left, bottom + 8), f"compute 1e{x0:.1f} .. 1e{x1:.1f} FLOP (log)", fill="black")
  draw.text((left, bottom + 24), f"fit: L = {a:.3g} * C^-{b:.3f}", fill="black")
  draw.text((4, top), f"1e{y1:.2f}", fill="black")
  draw.text((4, bottom - 10), f"1e{y0:.2f}", fill="black")
  image.save(path)
