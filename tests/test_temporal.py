"""Temporal consistency: flicker, and the warping error under the synthetic world's exact flow
(ground-truth clips score near 0; the same frames out of order or with the wrong flow do not)."""
import numpy as np
import pytest

from videogen.data import synthetic, synthetic_grammar
from videogen.eval.temporal import flicker, rigid_flow, warp, warping_error


def test_flicker_is_zero_for_a_still_video_and_grows_with_change():
  still = np.full((4, 8, 8, 3), 100, np.uint8)
  blink = still.copy()
  blink[1::2] = 220
  assert flicker(still) == 0.0
  assert flicker(blink) == pytest.approx(120 / 255)


def test_warp_moves_content_by_the_flow():
  frames = np.random.default_rng(0).integers(0, 255, (1, 12, 12, 3)).astype(np.float32)
  flow = np.zeros((1, 12, 12, 2), np.float32)
  flow[..., 1] = -2.0  # pixel q of the next frame came from two columns left
  moved, inside = warp(frames, flow)
  np.testing.assert_allclose(moved[0, :, 2:], frames[0, :, :-2], atol=1e-4)
  assert not inside[0, :, :2].any() and inside[0, :, 2:].all()
  half = warp(frames, flow / 4)[0]  # half a pixel: the mean of two neighbours
  np.testing.assert_allclose(half[0, :, 1:], (frames[0, :, 1:] + frames[0, :, :-1]) / 2,
                             atol=1e-4)


def _masks(clip: synthetic.Clip) -> np.ndarray:
  colours = np.array([synthetic_grammar.COLOURS[o["colour"]] for o in clip.objects], np.float32)
  distance = np.linalg.norm(clip.video[:, None].astype(np.float32)
                            - colours[None, :, None, None], axis=-1)
  return distance < 40


@pytest.mark.parametrize("background", ["plain", "checker"])
def test_ground_truth_flow_explains_rendered_clips(background):
  world = synthetic.World(num_frames=12, height=48, width=48, num_objects=2,
                          allow_bounces=True, background=background)
  errors, shuffled, no_flow = [], [], []
  clips = (synthetic.render_clip(world, 0, index) for index in range(20))
  # Colour masks cannot tell two objects of one colour apart: keep clips whose colours differ.
  for index, clip in enumerate([c for c in clips
                                if len({o["colour"] for o in c.objects}) == 2][:6]):
    flow, valid = rigid_flow(_masks(clip), clip.positions)
    errors.append(warping_error(clip.video, flow, valid))
    order = np.random.default_rng(index).permutation(world.num_frames)
    shuffled.append(warping_error(clip.video[order], flow, valid))
    no_flow.append(warping_error(clip.video, np.zeros_like(flow), valid))
  print(f"{background}: GT {np.mean(errors):.4f}, shuffled {np.mean(shuffled):.4f}, "
        f"zero flow {np.mean(no_flow):.4f}")
  assert max(errors) < 0.003
  assert np.mean(shuffled) > 20 * np.mean(errors) and np.mean(no_flow) > 5 * np.mean(errors)
