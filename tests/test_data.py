import dataclasses
import itertools

import numpy as np
import pytest

from conftest import tiny_config, word_features
from videogen.data import pipeline, synthetic, synthetic_grammar
from videogen.eval import synthetic_judge


def test_clips_are_a_pure_function_of_seed_and_index():
  world = synthetic.World()
  a, b = synthetic.render_clip(world, 0, 7), synthetic.render_clip(world, 0, 7)
  np.testing.assert_array_equal(a.video, b.video)
  assert a.caption == b.caption
  assert not np.array_equal(a.video, synthetic.render_clip(world, 0, 8).video)
  assert not np.array_equal(a.video, synthetic.render_clip(world, 1, 7).video)


@pytest.mark.parametrize("shape", [(1, 8, 8), (5, 24, 40), (16, 64, 48)])
def test_any_shape(shape):
  t, h, w = shape
  clip = synthetic.render_clip(synthetic.World(num_frames=t, height=h, width=w), 0, 3)
  assert clip.video.shape == (t, h, w, 3) and clip.video.dtype == np.uint8
  assert clip.positions.shape == (t, 1, 2)


def test_plain_caption_template_and_ground_truth_positions():
  world = synthetic.World(num_frames=8, height=48, width=48)
  for index in range(20):
    clip = synthetic.render_clip(world, 0, index)
    obj = clip.objects[0]
    assert clip.caption == f"a {obj['colour']} {obj['shape']} moving {obj['direction']}"
    # The judge sees one object, whose centroid is where the ground truth says it is (within
    # half a pixel: measured 0.47) and which moves the captioned way.
    labels = synthetic_judge.colour_labels(clip.video)
    mask = synthetic_judge.blobs(labels == list(synthetic_judge.COLOURS).index(obj["colour"]))
    np.testing.assert_allclose(synthetic_judge.blob_moments(mask)[1], clip.positions[:, 0],
                               atol=0.5)
    seen = synthetic_judge.observe_video(clip.video, labels)
    assert list(seen) == [obj["colour"]] and seen[obj["colour"]]["direction"] == obj["direction"]


def test_bounces_reverse_the_motion():
  world = synthetic.World(num_frames=40, allow_bounces=True, speed=(0.1, 0.1))
  for index in range(5):
    clip = synthetic.render_clip(world, 0, index)
    axis = int(np.argmax(np.abs(synthetic_grammar.DIRECTIONS[clip.objects[0]["direction"]])))
    velocity_sign = np.sign(np.diff(clip.positions[:, 0, axis]))
    reversals = int((np.diff(velocity_sign[velocity_sign != 0]) != 0).sum())
    # A bounce between the last two frames may not show as a reversal in the samples yet.
    assert clip.objects[0]["bounces"] - 1 <= reversals <= clip.objects[0]["bounces"]
    assert clip.objects[0]["bounces"] >= 2
    radius_px = world.radius * world.height
    assert clip.positions.min() >= radius_px - 0.5 - 1e-6
    assert clip.positions.max() <= world.height - radius_px - 0.5 + 1e-6


def test_parametric_world_multiple_objects_and_camera():
  world = synthetic.World(num_objects=2, camera="pan", background="checker",
                          caption_forms=("verbose",))
  clip = synthetic.render_clip(world, 0, 1)
  assert clip.positions.shape == (8, 2, 2) and " and " in clip.caption
  assert "camera panning" in clip.caption
  assert not np.allclose(clip.camera[0, :2], clip.camera[-1, :2])


@pytest.mark.parametrize("world", [
    {"data.synthetic.num_objects": 2, "data.synthetic.camera": "pan",
     "data.synthetic.allow_bounces": True,
     "data.synthetic.caption_forms": ("plain", "verbose", "bounces")},
    {"data.num_frames": 16, "data.synthetic.scenes": "suite", "data.synthetic.radius": 0.16},
], ids=["random", "suite"])
def test_synthetic_captions_drawn_without_pixels_are_the_clips_captions(world):
  """The tokenizer trains on `source_captions`, drawn without rendering: the same captions, in
  the same order, as the rendered training clips carry."""
  config = tiny_config(**world)
  rendered = [synthetic.render_clip(pipeline.world_from_config(config.data), config.data.seed,
                                    i).caption for i in range(200)]
  assert pipeline.source_captions(config, 200) == rendered
  assert len(set(rendered)) > 50  # a varied stream, not one repeated caption


def test_unknown_world_values_are_named():
  with pytest.raises(ValueError, match="data.synthetic.colours"):
    synthetic.World(colours=("mauve",))
  with pytest.raises(ValueError, match="data.synthetic.scenes='prompts'"):
    synthetic.World(scenes="prompts")
  with pytest.raises(ValueError, match="static camera"):
    synthetic.World(scenes="suite", camera="pan")
  with pytest.raises(ValueError, match=r"suite_object_counts: \[4\] not in \[1, 3\]"):
    synthetic.World(scenes="suite", radius=0.16, suite_object_counts=(1, 4))


def test_suite_clips_show_the_object_counts_asked_for():
  """`data.synthetic.suite_object_counts` is what suite clips draw their object count from
  (default: the suite's own 1, 1, 2, 3); the evaluation prompts keep the suite's cycle."""
  world = synthetic.World(num_frames=16, radius=0.16, scenes="suite")
  counts = lambda w: np.bincount(  # noqa: E731
      [len(synthetic.draw_scene(w, 0, i).objects) for i in range(200)], minlength=4)[1:]
  assert counts(world)[0] > 1.5 * counts(world)[2]  # single objects weigh double by default
  threes = counts(dataclasses.replace(world, suite_object_counts=(3,)))
  assert threes[:2].sum() == 0 and threes[2] == 200
  mostly_three = counts(dataclasses.replace(world, suite_object_counts=(1, 2, 3, 3)))
  assert mostly_three[2] > 1.5 * mostly_three[0]


def test_kept_apart_objects_never_touch_and_still_show_their_captions():
  """`data.synthetic.keep_apart`: a suite clip's objects stay two radii apart in every frame
  (draws that no paths keep apart are redrawn), unlike the default stream, where they may pass
  over each other; every clip still shows exactly its caption."""
  world = synthetic.World(num_frames=16, radius=0.16, scenes="suite", suite_object_counts=(3,))

  def touching(w):  # 100 three-object draws: a few of them no candidate paths keep apart
    scenes = [synthetic.draw_scene(w, 0, i) for i in range(100)]
    gaps = [np.linalg.norm(s.paths[:, :, None] - s.paths[:, None], axis=-1) for s in scenes]
    return np.mean([(g[:, ~np.eye(len(g[0]), dtype=bool)] < 2 * w.radius).any() for g in gaps])

  apart = dataclasses.replace(world, keep_apart=True)
  assert touching(world) > 0.4 and touching(apart) == 0, (touching(world), touching(apart))
  clips = [synthetic.render_clip(apart, 1, i) for i in range(24)]
  report = synthetic_judge.judge(np.stack([c.video for c in clips]), [c.caption for c in clips])
  assert report["overall"] == 1.0, [v for v in report["per_video"] if not v["ok"]]
  assert report["stated"]["speed"] and report["stated"]["bounces"]


def _listed_apart_pick(world, objects, rng, candidates):
  """The kept-apart placement written plainly: every combination of candidate paths listed,
  the touching ones struck out, one of the rest drawn."""
  options = [synthetic._spec_paths(world, rng, spec, candidates) for spec in objects]
  touch = np.zeros((candidates,) * len(objects), bool)
  for a, b in itertools.combinations(range(len(objects)), 2):
    gaps = options[a]["path"].astype(np.float32)[:, None] - options[b]["path"].astype(np.float32)
    shape = [candidates if k in (a, b) else 1 for k in range(len(objects))]
    touch |= (np.square(gaps).sum(-1) < (2 * world.radius) ** 2).any(-1).reshape(shape)
  apart = np.flatnonzero(~touch)
  if not len(apart):
    return None
  picked = np.unravel_index(apart[rng.integers(len(apart))], touch.shape)
  return [option["path"][i] for option, i in zip(options, picked)]


def test_kept_apart_placement_counts_the_combinations_it_would_list():
  """`_place_apart` counts the kept-apart combinations instead of listing them (128³ for three
  objects): from the same draws it picks the same paths as the listing, so the pick is uniform
  over the combinations that keep apart, for one, two and three objects."""
  world = synthetic.World(num_frames=16, radius=0.16, scenes="suite", keep_apart=True)
  rng = np.random.default_rng(0)
  drawn = none = 0
  for count in (1, 2, 3, 3, 3):
    for seed in range(12):
      objects = synthetic_grammar.suite_objects(world, rng, count)
      counted = synthetic._place_apart(world, objects, np.random.default_rng(seed), candidates=16)
      listed = _listed_apart_pick(world, objects, np.random.default_rng(seed), 16)
      if listed is None:
        assert counted is None
        none += 1
        continue
      for path, placed in zip(listed, counted):
        np.testing.assert_array_equal(path, placed["path"])
      drawn += 1
  assert drawn > 30 and none, (drawn, none)  # 16 candidates leave some multi-object draws apart-less


def _first_batches(config, n, **kwargs):
  iterator = iter(pipeline.make_dataset(config, word_features(config), **kwargs))
  return iterator, [next(iterator) for _ in range(n)]


def test_pipeline_batches_have_the_configured_shape():
  config = tiny_config(**{"data.num_frames": 6, "data.height": 24, "data.width": 40})
  _, (batch,) = _first_batches(config, 1)
  assert batch["video"].shape == (8, 6, 24, 40, 3)
  assert batch["video"].min() >= -1 and batch["video"].max() <= 1
  assert batch["tokens"].shape == batch["token_mask"].shape == (8, config.text.max_length)


def test_each_process_reads_its_own_rows_of_the_same_global_batch():
  config = tiny_config()
  _, whole = _first_batches(config, 2, process_index=0, process_count=1)
  _, first = _first_batches(config, 2, process_index=0, process_count=2)
  _, second = _first_batches(config, 2, process_index=1, process_count=2)
  for step in range(2):
    assert first[step]["video"].shape[0] == second[step]["video"].shape[0] == 4
    for key in whole[step]:
      np.testing.assert_array_equal(
          np.concatenate([first[step][key], second[step][key]]), whole[step][key])
  assert not np.array_equal(whole[0]["video"], whole[1]["video"])


def test_iterator_state_resumes_the_stream_exactly():
  config = tiny_config()
  iterator, _ = _first_batches(config, 3)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(2)]
  resumed = iter(pipeline.make_dataset(config, word_features(config)))
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_shuffle_is_seeded():
  a = _first_batches(tiny_config(), 1)[1][0]["video"]
  b = _first_batches(tiny_config(**{"data.seed": 1}), 1)[1][0]["video"]
  np.testing.assert_array_equal(a, _first_batches(tiny_config(), 1)[1][0]["video"])
  assert not np.array_equal(a, b)


def test_world_from_config_passes_every_synthetic_key():
  world = pipeline.world_from_config(tiny_config(**{"data.synthetic.num_objects": 3}).data)
  assert world.num_objects == 3
  config_keys = set(tiny_config().data.synthetic.keys()) - {"num_clips"}
  assert config_keys <= {f.name for f in dataclasses.fields(synthetic.World)}
