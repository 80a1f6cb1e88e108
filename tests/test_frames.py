"""uint8 frames ↔ the models' pixel space, and the cover-crop (videogen/data/frames.py)."""
import numpy as np

from videogen.data import frames


def test_uint8_round_trips_through_the_pixel_space_exactly():
  every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
  x = frames.from_uint8(every)
  assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
  np.testing.assert_array_equal(frames.to_uint8(x), every)
  np.testing.assert_array_equal(frames.to_uint8(np.array([-3.0, 3.0, 0.0])), [0, 255, 128])


def test_cover_crop_scales_to_cover_then_takes_the_centre():
  # A 10x40 frame whose columns count 0..39 (x6): to 8x8 it scales to 8x32 and keeps the
  # middle 8 columns, the source's columns 15..25.
  video = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, None, :, None] * 6,
                          (2, 10, 40, 3)).copy()
  out = frames.cover_crop(video, 8, 8)
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
  middle = out[0, 4, :, 0].astype(int)
  assert 85 <= middle.min() and middle.max() <= 150 and np.all(np.diff(middle) > 0)
  # Leading axes are kept: one frame, and a batch of clips.
  assert frames.cover_crop(video[0], 8, 8).shape == (8, 8, 3)
  assert frames.cover_crop(video[None], 5, 20).shape == (1, 2, 5, 20, 3)
