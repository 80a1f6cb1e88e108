"""One process of a (possibly multi-process) FVD + CLIP evaluation, for
tests/test_pod_rehearsal.py: `python tests/multihost_eval.py I3D CLIP_DIR OUT.json`."""
import json
import sys

from videogen.parallel.distributed import initialize_from_env


def main(weights: str, clip_folder: str, output: str) -> None:
  initialize_from_env()
  import jax
  import numpy as np
  from videogen.data import synthetic, synthetic_grammar
  from videogen.eval import report as report_lib
  world = synthetic.World(num_frames=8, height=32, width=32)
  prompts = synthetic_grammar.prompt_suite(world, 12)
  real = [synthetic.render_prompt(p, world, seed=i).video for i, p in enumerate(prompts)]
  noisy = [np.clip(v + np.random.default_rng(i).normal(0, 40, v.shape), 0, 255).astype(np.uint8)
           for i, v in enumerate(real)]
  settings = report_lib.Settings(("fvd", "clip"), weights, clip_model=clip_folder, i3d_size=32,
                                 batch_size=8)
  report = report_lib.evaluate_videos(noisy, prompts, settings, reference=real)
  with open(output, "w") as f:
    json.dump({"fvd": report["fvd"], "clip": report["clip_score"],
               "devices": jax.device_count()}, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
