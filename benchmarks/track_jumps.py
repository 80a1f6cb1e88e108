"""Where sampled objects jump: frame-to-frame steps inside a temporal token against across.

    python -m videogen.evaluate --workdir RUN --prompt_set suite --num_prompts 48
    python benchmarks/track_jumps.py RUN/eval/report.json --frames_per_token 4

Reads the judge's per-object tracks (`synthetic_judge.observe`: the centre along the motion
axis in each frame) from an evaluation report. A DiT whose temporal patches hold F frames draws
frames f·F … f·F + F − 1 from one token; if its tokens do not agree on where an object is, the
steps between tokens are large while those inside are the object's speed. Prints the median
absolute step (frame sizes) inside tokens and at token boundaries, and how many boundary steps
are over twice the fastest speed a caption asks for (a jump, not motion).
"""
import argparse
import json

import numpy as np

from videogen.data.synthetic_grammar import SPEEDS

FASTEST = max(high for _, high in SPEEDS.values())  # frame sizes per frame


def steps(report: dict, frames_per_token: int) -> tuple[list[float], list[float]]:
  """(|steps| inside tokens, |steps| across token boundaries) over every seen object."""
  inside, across = [], []
  for video in report["per_video"]:
    for seen in video["seen"].values():
      track = {int(f): x for f, x in seen.get("track", {}).items()}
      for f in sorted(track):
        if f + 1 in track:
          step = abs(track[f + 1] - track[f])
          (across if (f + 1) % frames_per_token == 0 else inside).append(step)
  return inside, across


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("report", help="an evaluation's report.json")
  parser.add_argument("--frames_per_token", type=int, default=4,
                      help="the DiT's temporal patch (model.patch_size[0])")
  args = parser.parse_args()
  with open(args.report) as f:
    inside, across = steps(json.load(f), args.frames_per_token)
  if not inside and not across:
    raise SystemExit(f"error: {args.report} has no object tracks (evaluate it again: reports "
                     "from before 2026-12-06 lack them)")
  row = {"steps_inside": len(inside), "median_inside": round(float(np.median(inside or [0])), 4),
         "steps_across": len(across), "median_across": round(float(np.median(across or [0])), 4),
         "jumps_across": int(np.sum(np.array(across) > 2 * FASTEST)),
         "jumps_inside": int(np.sum(np.array(inside) > 2 * FASTEST))}
  print(json.dumps(row))


if __name__ == "__main__":
  main()
