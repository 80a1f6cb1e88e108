"""Inception-I3D (FVD's network): parity with cd-fvd's copy of piergiaj's pytorch-i3d on a
random network with randomized BatchNorm statistics, weight conversion and its errors, and
batch-sharded features equal to single-device ones."""
import numpy as np
import pytest

import jax
import flax.linen as nn

from videogen.eval import i3d, i3d_features
from videogen.formats import i3d as i3d_format
from videogen.parallel.mesh import DEFAULT_RULES

SIZE = (48, 64)  # frames resized to this (from 40×70: up in H, down in W)
FRAMES = 20  # → a (3, 2, 2) Mixed_5c map: the time window 2 pools for real (2 positions)


def _pre_pool_shape(t, h, w):
  """Mixed_5c's (T, H, W): 'same' padding gives ceil(n / stride) at every stride."""
  for st, sh in ((2, 2), (1, 2), (1, 2), (2, 2), (2, 2)):
    t, h, w = -(-t // st), -(-h // sh), -(-w // sh)
  return t, h, w


def _cdfvd():
  """(torch, cd-fvd's pytorch_i3d, its preprocess_i3d): the tests that compare with them skip
  where the test extra is not installed; the others run."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("cdfvd")
  from cdfvd.third_party.i3d import pytorch_i3d
  from cdfvd.third_party.i3d.utils import preprocess_i3d
  return torch, pytorch_i3d, preprocess_i3d


def _videos(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, FRAMES, 40, 70, 3), np.uint8)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(torch model, its state dict as numpy, our converted .safetensors path)."""
  torch, pytorch_i3d, preprocess_i3d = _cdfvd()
  torch.manual_seed(0)
  model = pytorch_i3d.InceptionI3d(400, in_channels=3)
  window = [min(a, b) for a, b in zip(i3d.AVG_POOL, _pre_pool_shape(FRAMES, *SIZE))]
  model.avg_pool = torch.nn.AvgPool3d(window, stride=1)  # our clamp; torch would fail here
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
  with torch.no_grad():
    for bn in bns:  # running stats = one batch's statistics, so activations stay O(1)
      bn.momentum, bn.eps = 1.0, 1e-3  # eps: piergiaj's (cd-fvd uses torch's 1e-5)
    model.train()(preprocess_i3d(_videos(2, seed=1), SIZE))
    for bn in bns:  # ... then perturbed, with random affine parameters
      bn.running_mean += 0.2 * torch.randn_like(bn.running_mean) * bn.running_var.sqrt()
      bn.running_var *= torch.rand_like(bn.running_var) * 1.5 + 0.5
      bn.weight.copy_(torch.rand_like(bn.weight) + 0.5)
      bn.bias.copy_(0.2 * torch.randn_like(bn.bias))
    model.logits.conv3d.bias.copy_(torch.randn_like(model.logits.conv3d.bias))
  state = {k: v.numpy() for k, v in model.eval().state_dict().items()}
  path = str(tmp_path_factory.mktemp("i3d") / "i3d.safetensors")
  i3d_format.save_converted(i3d_format.convert_state_dict(state), path)
  return model, state, path


@pytest.fixture(scope="module")
def single_device(reference):
  """Logits and features of 3 videos on one device, batches of 2 (the last one padded)."""
  features = i3d_features.I3DFeatures(reference[2], size=SIZE,
                                      mesh=i3d_features.data_mesh(jax.devices()[:1]))
  return features, features(_videos(3), batch_size=2), features(_videos(3), 2, features=True)


def test_matches_pytorch_i3d(reference, single_device):
  torch, _, preprocess_i3d = _cdfvd()
  model, _, _ = reference
  _, logits, features = single_device
  x = preprocess_i3d(_videos(3), SIZE)
  with torch.no_grad():
    want_logits = model(x).numpy()
    want_features = model.extract_features(x).mean((2, 3, 4)).numpy()
  for got, want in ((logits, want_logits), (features, want_features)):
    assert got.shape == want.shape
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"{want.shape}: max relative error {err:.1e} (scale {np.abs(want).max():.2f})")
    assert err <= 1e-5  # docs/evaluation.md's figure; measured 1.8e-6 (logits), 2.4e-6 (features)


def test_pooling_and_padding_match_torch():
  """The pieces clamping does not cover: a (2, 7, 7) window smaller than the map, and
  'same' max pools on odd and even sizes."""
  torch, pytorch_i3d, _ = _cdfvd()
  x = np.random.default_rng(0).normal(size=(2, 4, 9, 8, 5)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3)
  want = torch.nn.AvgPool3d(i3d.AVG_POOL, stride=1)(xt).mean((2, 3, 4)).numpy()
  np.testing.assert_allclose(i3d.pooled_features(x), want, rtol=1e-5, atol=1e-6)
  for kernel, stride in (((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))):
    pool = pytorch_i3d.MaxPool3dSamePadding(kernel, stride, padding=0)
    want = pool(xt).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_array_equal(i3d.max_pool_same(x, kernel, stride), want)


def test_preprocess_matches_cdfvd():
  _, _, preprocess_i3d = _cdfvd()
  videos = _videos(1)[:, :2]
  want = preprocess_i3d(videos, SIZE).permute(0, 2, 3, 4, 1).numpy()
  np.testing.assert_allclose(i3d_features.preprocess(videos, SIZE), want, atol=1e-5)


def test_sharded_matches_single_device(reference, single_device):
  sharded = i3d_features.I3DFeatures(reference[2], size=SIZE)  # 8 devices: 3 videos padded to 8
  assert sharded.mesh.size == len(jax.devices()) == 8
  got = sharded(_videos(3), batch_size=4)
  want = single_device[1]  # equal up to f32 summation order (batch 4 per device vs 2)
  np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_round_trips(reference, tmp_path):
  torch, _, _ = _cdfvd()
  model, state, path = reference
  want = i3d_format.convert_state_dict(state)
  torch.save(model.state_dict(), tmp_path / "rgb.pt")
  i3d_format.import_i3d(str(tmp_path / "rgb.pt"), str(tmp_path / "from_pt.safetensors"))
  for source in (path, tmp_path / "rgb.pt", tmp_path / "from_pt.safetensors"):
    got = i3d_format.load_i3d(source)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_conversion_errors(reference, tmp_path):
  state = reference[1]
  broken = {k: v for k, v in state.items() if k != "Mixed_4c.b1b.bn.running_var"}
  broken["Mixed_9z.b0.conv3d.weight"] = np.zeros(1)
  with pytest.raises(ValueError, match=r"1 missing keys \[Mixed_4c.b1b.bn.running_var\], "
                                       r"1 unexpected keys \[Mixed_9z.b0.conv3d.weight\]"):
    i3d_format.convert_state_dict(broken)
  with pytest.raises(ValueError, match="Conv3d_2b_1x1.bn.weight has shape"):
    i3d_format.convert_state_dict({**state, "Conv3d_2b_1x1.bn.weight": np.zeros(3)})
  missing = tmp_path / "absent.pt"
  with pytest.raises(FileNotFoundError, match=f"{missing}.*rgb_imagenet.pt.*--from pytorch-i3d"):
    i3d_features.I3DFeatures(missing)


def test_parameters_replicated_under_default_rules():
  abstract = jax.eval_shape(i3d.InceptionI3d().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 8, 32, 32, 3), np.float32))
  leaves = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert all(isinstance(leaf, nn.Partitioned) for leaf in leaves)
  specs = nn.logical_to_mesh(nn.get_partition_spec(abstract), DEFAULT_RULES)
  assert all(all(axis is None for axis in spec) for spec in jax.tree.leaves(
      specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))
