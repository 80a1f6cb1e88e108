"""Video manifests in the Open-Sora column style, and the filters applied to them.

A manifest is CSV or JSONL with one clip per row: `path,text,num_frames,height,width,fps`
plus optional `aspect_ratio`, `duration`, `motion` and any score columns (`aesthetic`,
`watermark`, …). `python -m videogen.prepare_data` writes one from a folder or a bare list.
Relative paths resolve against the manifest's folder. Rows are parsed as data: numbers with
`float()`/`int()`, never `eval`.
"""
import csv
import dataclasses
import json
import os
import warnings

import ml_collections

from videogen.formats.weight_files import parse_json

COLUMNS = ("path", "text", "num_frames", "height", "width", "fps")
NUMERIC = {"num_frames": int, "height": int, "width": int, "fps": float}
# Each numeric column's upper bound (rows outside (0, bound] are skipped as malformed).
LIMITS = {"num_frames": 10_000_000, "height": 65_536, "width": 65_536, "fps": 10_000.0}


class ManifestError(ValueError):
  """A manifest that cannot be used at all (missing, unreadable, no usable rows)."""


@dataclasses.dataclass(frozen=True)
class Clip:
  path: str
  text: str
  num_frames: int
  height: int
  width: int
  fps: float
  scores: tuple[tuple[str, float], ...] = ()  # motion, aesthetic, … as (name, value)

  @property
  def duration(self) -> float:
    return self.num_frames / self.fps if self.fps else 0.0

  def score(self, name: str) -> float | None:
    return dict(self.scores).get(name)


def read_rows(path: str) -> list[dict]:
  """The raw rows of a CSV or JSONL file (a line that is not a JSON object, or nests deeper
  than `weight_files.MAX_JSON_DEPTH`, becomes a `_bad` row)."""
  # Bytes that are not UTF-8 become U+FFFD: a path with them names no file and is skipped
  # as unreadable, a caption keeps the rest of its text.
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    if path.endswith(".jsonl"):
      rows = []
      for number, line in enumerate(f, 1):
        if line.strip():
          try:
            row = parse_json(line, f"line {number}")
          except ValueError as e:
            row = {"_bad": str(e)}
          rows.append(row if isinstance(row, dict) else
                      {"_bad": f"line {number} is a JSON {type(row).__name__}, not an object"})
      return rows
    if path.endswith(".csv"):
      return list(csv.DictReader(f))
  raise ManifestError(f"{path!r}: want a .csv or .jsonl file")


def _clip(row: dict, folder: str) -> Clip:
  if "_bad" in row:
    raise ValueError(row["_bad"])
  # An empty caption is allowed (the clip trains unconditioned; counted at start-up).
  missing = [c for c in COLUMNS if row.get(c) is None or (c != "text" and row[c] == "")]
  if missing:
    raise ValueError(f"missing {', '.join(missing)}")
  values = {}
  for name, cast in NUMERIC.items():
    values[name] = cast(row[name])  # OverflowError for int(1e400): skipped as malformed
    if not 0 < values[name] <= LIMITS[name]:  # NaN fails too
      raise ValueError(f"{name}={row[name]!r} is outside (0, {LIMITS[name]:g}]")
  scores = []
  for name, value in row.items():
    if name not in COLUMNS and value not in (None, ""):
      try:
        scores.append((name, float(value)))
      except (TypeError, ValueError):
        pass  # a text column (e.g. a source URL) is not a score
  path = row["path"] if os.path.isabs(row["path"]) else os.path.join(folder, row["path"])
  return Clip(path=path, text=str(row["text"]), scores=tuple(sorted(scores)), **values)


def read_manifest(path: str) -> tuple[list[Clip], int]:
  """(clips, number of rows skipped as malformed); one warning line per skipped row."""
  if not os.path.isfile(path):
    raise ManifestError(f"data.manifest={path!r} does not exist")
  folder = os.path.dirname(os.path.abspath(path))
  clips, skipped = [], 0
  for number, row in enumerate(read_rows(path), 1):
    try:
      clips.append(_clip(row, folder))
    except (TypeError, ValueError, OverflowError) as e:
      skipped += 1
      warnings.warn(f"{path}: row {number} skipped: {e}", stacklevel=2)
  return clips, skipped


def write_manifest(path: str, rows: list[dict]) -> None:
  """Rows (dicts with at least COLUMNS) → CSV or JSONL by suffix."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.endswith(".jsonl"):
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(row) + "\n" for row in rows)
    return
  names = list(COLUMNS) + sorted({k for row in rows for k in row} - set(COLUMNS))
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)


def passes(clip: Clip, filters: ml_collections.ConfigDict) -> bool:
  """`data.filters`: duration band (seconds), minimum short side, motion band, and minimum
  scores (`min_scores={"aesthetic": 4.5}`); a clip without a filtered score fails that test."""
  if not filters.min_duration <= clip.duration <= (filters.max_duration or float("inf")):
    return False
  if min(clip.height, clip.width) < filters.min_resolution:
    return False
  motion = clip.score("motion")
  if filters.min_motion or filters.max_motion:
    if motion is None or not filters.min_motion <= motion <= (filters.max_motion or float("inf")):
      return False
  for name, threshold in filters.min_scores.items():
    value = clip.score(name)
    if value is None or value < threshold:
      return False
  return True
