"""How tightly a caption fixes an object's path: the demo's world against the suite's.

    python benchmarks/caption_path_spread.py [--paths 5000]

Per caption (direction "right"; the suite's speed words and bounce counts), from the
renderer's own paths: how far the mean path over start positions moves along the motion axis
(what an x0 prediction at full noise can show), each frame's spread over the paths, and each
frame's spread given the start position (binned in 40 steps across the frame). A denoiser
that has placed the object can draw the rest of the path to within that last spread.
"""
import argparse

import numpy as np

from videogen.data import synthetic

DEMO = synthetic.World(num_frames=8, radius=0.2, speed=(0.05, 0.07))  # configs/tiny.py
SUITE = synthetic.World(num_frames=16, radius=0.16, speed=(0.06, 0.09), scenes="suite")


def spread(paths: np.ndarray) -> dict:
  """`paths` `(N, T)`: positions along the motion axis, in frame widths."""
  start = np.digitize(paths[:, 0], np.linspace(0, 1, 41))
  given_start = [paths[start == b].std(0).mean() for b in np.unique(start)
                 if (start == b).sum() > 20]
  return {"mean_path_travel": round(float(np.ptp(paths.mean(0))), 3),
          "frame_spread": round(float(paths.std(0).mean()), 3),
          "frame_spread_given_start": round(float(np.mean(given_start)), 3)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--paths", type=int, default=5000, help="Paths drawn per caption.")
  n = parser.parse_args().paths
  rng = np.random.default_rng(0)
  demo = np.stack([synthetic._object_trajectory(DEMO, rng, "right")[0][:, 1] for _ in range(n)])
  print("demo 'moving right'", spread(demo))
  for speed in (None, "quickly", "slowly"):
    for bounces in [None, *synthetic.feasible_bounces(SUITE, speed)]:
      spec = dict(colour="red", shape="circle", direction="right", speed=speed, bounces=bounces)
      paths = np.stack([synthetic._spec_path(SUITE, rng, spec)["path"][:, 1] for _ in range(n)])
      print(f"suite {synthetic.format_prompt([spec])!r}", spread(paths))


if __name__ == "__main__":
  main()
