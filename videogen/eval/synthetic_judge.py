"""Judging generated videos of the synthetic world from pixels alone.

For a prompt in the plain template ("a red circle moving right") the judge segments pixels
near the named colour, tracks their centroid, and checks the object is present and moves
the stated way. It is exact on the generator's own clips (see tests).
"""
import itertools
import re

import numpy as np

from videogen.data.synthetic import COLOURS, DIRECTIONS

_PLAIN = re.compile(r"a (\w+) (\w+) moving (\w+)")


def parse_prompt(prompt: str) -> dict[str, str]:
  match = _PLAIN.fullmatch(prompt.strip().lower())
  if not match or match[1] not in COLOURS or match[3] not in DIRECTIONS:
    raise ValueError(f"prompt {prompt!r} is not of the form 'a <colour> <shape> moving <dir>'")
  return {"colour": match[1], "shape": match[2], "direction": match[3]}


def colour_track(video_thwc: np.ndarray, colour: str, tolerance: float = 60.0,
                 min_pixels: int = 3, max_spread: float = 0.15) -> np.ndarray:
  """Per-frame centroid `(T, 2)` (row, col) of pixels near `colour`; NaN where absent.

  A frame counts as showing the object only if such pixels form one compact blob: their
  spread (std of coordinates) is under `max_spread` of the frame. Scattered noise is not."""
  target = np.array(COLOURS[colour], np.float32)
  distance = np.linalg.norm(video_thwc.astype(np.float32) - target, axis=-1)
  mask = distance < tolerance
  rows, cols = np.indices(mask.shape[1:])
  counts = mask.sum((1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    centroid = np.stack([(mask * rows).sum((1, 2)) / counts,
                         (mask * cols).sum((1, 2)) / counts], -1)
    spread = np.stack([np.sqrt((mask * (rows - centroid[:, 0, None, None]) ** 2).sum((1, 2))
                               / counts),
                       np.sqrt((mask * (cols - centroid[:, 1, None, None]) ** 2).sum((1, 2))
                               / counts)], -1) / np.array(mask.shape[1:])
  centroid[(counts < min_pixels) | ~(spread.max(-1) < max_spread)] = np.nan
  return centroid


def observed_direction(video_thwc: np.ndarray, colour: str, min_shift: float = 0.1) -> str:
  """"left"/"right"/"up"/"down", "static", or "absent" for the object of `colour`.

  `min_shift` is the net displacement, as a fraction of the frame, that counts as moving."""
  track = colour_track(video_thwc, colour)
  present = ~np.isnan(track[:, 0])
  if present.sum() < max(2, len(track) // 2):
    return "absent"
  first, last = track[present][0], track[present][-1]
  shift = (last - first) / np.array(video_thwc.shape[1:3], np.float32)
  if np.abs(shift).max() < min_shift:
    return "static"
  axis = int(np.argmax(np.abs(shift)))
  step = [0.0, 0.0]
  step[axis] = float(np.sign(shift[axis]))
  return next(name for name, d in DIRECTIONS.items() if list(d) == step)


def judge(videos_nthwc: np.ndarray, prompts: list[str]) -> dict[str, float]:
  """Fractions of videos whose named colour is present and moves the prompted way."""
  colour_ok = direction_ok = 0
  for video, prompt in zip(videos_nthwc, prompts):
    wanted = parse_prompt(prompt)
    seen = observed_direction(video, wanted["colour"])
    colour_ok += seen != "absent"
    direction_ok += seen == wanted["direction"]
  n = max(len(prompts), 1)
  return {"colour_present": colour_ok / n, "direction_correct": direction_ok / n}


def synthetic_prompts(synthetic_config, n: int) -> list[str]:
  """`n` distinct plain-template prompts, cycling directions so each gets an equal share."""
  combos = list(itertools.product(synthetic_config.colours, synthetic_config.shapes))
  directions = list(synthetic_config.directions)
  return [f"a {combos[(i * 7) % len(combos)][0]} {combos[(i * 7) % len(combos)][1]} moving "
          f"{directions[i % len(directions)]}" for i in range(n)]
