"""`data.filters` (which manifest clips train) and `data.buckets.frame_stride > 1` (every
stride-th frame: the span a bucket needs, the windows the plan draws, the frames a batch
holds), on made-up clips: no video file is decoded."""
import ml_collections
import numpy as np
import pytest

from videogen.config import base_config
from videogen.data import buckets
from videogen.data.frames import from_uint8
from videogen.data.manifest import Clip, passes
from videogen.data.videos import VideoBatches


def _clip(num_frames=100, fps=10.0, height=240, width=320, **scores) -> Clip:
  return Clip(path="c.mp4", text="a clip", num_frames=num_frames, height=height, width=width,
              fps=fps, scores=tuple(sorted(scores.items())))


def _filters(**overrides) -> ml_collections.ConfigDict:
  filters = base_config().data.filters
  filters.update(overrides)
  return filters


def test_default_filters_pass_every_clip():
  assert passes(_clip(num_frames=1, height=1, width=1), _filters())


@pytest.mark.parametrize("overrides,clip,expected", [
    # Duration band in seconds (100 frames at 10 fps: 10 s); max_duration 0 means no limit.
    ({"min_duration": 10.0}, _clip(), True), ({"min_duration": 10.5}, _clip(), False),
    ({"max_duration": 10.0}, _clip(), True), ({"max_duration": 9.5}, _clip(), False),
    # The shorter side.
    ({"min_resolution": 240}, _clip(), True), ({"min_resolution": 241}, _clip(), False),
    ({"min_resolution": 241}, _clip(height=320, width=240), False),
    # Motion band: a clip without a motion score fails it once either bound is set.
    ({"min_motion": 2.0}, _clip(motion=2.0), True), ({"min_motion": 2.0}, _clip(motion=1.9), False),
    ({"max_motion": 5.0}, _clip(motion=5.1), False), ({"max_motion": 5.0}, _clip(), False),
    ({"min_motion": 1.0, "max_motion": 5.0}, _clip(motion=3.0), True),
    # Minimum scores by name; a missing score fails.
    ({"min_scores": {"aesthetic": 4.5}}, _clip(aesthetic=4.5), True),
    ({"min_scores": {"aesthetic": 4.5}}, _clip(aesthetic=4.4), False),
    ({"min_scores": {"aesthetic": 4.5}}, _clip(motion=9.0), False),
    ({"min_scores": {"aesthetic": 4.5, "ocr": 0.5}}, _clip(aesthetic=5.0, ocr=0.4), False),
])
def test_each_filter_keeps_and_drops_at_its_bound(overrides, clip, expected):
  assert passes(clip, _filters(**overrides)) is expected


def _spec(stride: int) -> buckets.BucketSpec:
  return buckets.BucketSpec.exact(frames=4, height=8, width=8, batch_size=2, frame_stride=stride)


def test_a_strided_bucket_needs_a_clip_spanning_its_frames():
  # 4 frames at stride 3 span (4 - 1) * 3 + 1 = 10 source frames.
  spec = _spec(3)
  assert spec.assign(9, 8, 8, np.random.default_rng(0)) is None
  assert spec.assign(10, 8, 8, np.random.default_rng(0)) == buckets.Bucket(4, 8, 8, 2)
  assert _spec(1).assign(4, 8, 8, np.random.default_rng(0)) is not None


def test_strided_windows_stay_inside_their_clips():
  shapes = np.array([[n, 8, 8] for n in (10, 11, 16, 40) * 4])
  plan = buckets.epoch_plan(shapes, _spec(3), seed=0, epoch=0)
  assert sum(len(b.clips) for b in plan) == len(shapes)
  starts = {i: s for b in plan for i, s in zip(b.clips, b.starts)}
  for index, start in starts.items():
    assert 0 <= start and start + 9 < shapes[index, 0]
  assert any(s > 0 for s in starts.values())  # the longer clips draw their window


def test_a_strided_batch_holds_every_stride_th_frame():
  calls = []

  def reader(index, start, count, stride):  # frame k of clip `index` has the value k
    calls.append((index, start, count, stride))
    values = start + stride * np.arange(count, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, 8, 8, 3)).copy()

  clips = [_clip(num_frames=40, height=8, width=8) for _ in range(2)]
  batches = VideoBatches(clips, reader, 3, None, lambda key, caption: caption, 0, 1)
  planned = buckets.PlannedBatch(buckets.Bucket(4, 8, 8, 2), (0, 1), (5, 0), ())
  video = batches(planned)["video"]
  assert sorted(calls) == [(0, 5, 4, 3), (1, 0, 4, 3)]
  np.testing.assert_array_equal(video[0, :, 0, 0, 0], from_uint8(np.array([5, 8, 11, 14])))
  np.testing.assert_array_equal(video[1, :, 0, 0, 0], from_uint8(np.array([0, 3, 6, 9])))
