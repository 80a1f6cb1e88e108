"""diffusers CogVideoX / Wan transformers → our expert / joint layouts: outputs match tiny
random diffusers models; the convert CLI writes an export that reproduces them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from videogen.formats.diffusers_dit import (cogvideox_model_config, convert_cogvideox,
                                            convert_wan, stack_blocks, wan_model_config)
from videogen.models.dit import DiT, DiTSpec


def _diffusers():
  """(torch, diffusers): the tests that compare with diffusers skip where the test extra is
  not installed; the others run."""
  return pytest.importorskip("torch"), pytest.importorskip("diffusers")


COGVIDEOX = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                 time_embed_dim=24, text_embed_dim=12, num_layers=2, sample_width=8,
                 sample_height=8, sample_frames=9, patch_size=2, max_text_seq_length=6,
                 use_rotary_positional_embeddings=True)
WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
           out_channels=4, text_dim=12, freq_dim=32, ffn_dim=48, num_layers=2,
           rope_max_seq_len=32)


def _random(model):
  """diffusers' init leaves many weights zero; draw all of them so every path shows."""
  torch, _ = _diffusers()
  torch.manual_seed(1)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.2)
  return model.eval()


def _state(model):
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _ours(settings, params, x_bcthw_or_btchw, t, context, channels_axis):
  spec = DiTSpec(**{k: v for k, v in settings.items() if k != "text_dim"}, scan_layers=False)
  x = np.moveaxis(x_bcthw_or_btchw.numpy(), channels_axis, -1)
  out = DiT(spec).apply({"params": params}, jnp.asarray(x), jnp.asarray(t.numpy()),
                        jnp.asarray(context.numpy()), jnp.ones(context.shape[:2], bool))
  return np.moveaxis(np.asarray(out), -1, channels_axis)


def _cogvideox(patch_size_t=None, patch_bias=True):
  torch, diffusers = _diffusers()
  torch.manual_seed(0)
  return _random(diffusers.CogVideoXTransformer3DModel(**COGVIDEOX, patch_size_t=patch_size_t,
                                                       patch_bias=patch_bias))


def _cogvideox_reference(model, frames):
  torch, _ = _diffusers()
  from diffusers.models.embeddings import get_3d_rotary_pos_embed
  torch.manual_seed(2)
  x, context = torch.randn(2, frames, 4, 8, 8), torch.randn(2, 6, 12)
  t = torch.tensor([10.0, 500.0])
  latent_frames = frames // (model.config.patch_size_t or 1)
  # The pipeline's RoPE at its base crop: integer (t, h, w) positions, as ours.
  rope = get_3d_rotary_pos_embed(16, ((0, 0), (4, 4)), (4, 4), latent_frames)
  with torch.no_grad():
    want = model(x, context, t, image_rotary_emb=rope, return_dict=False)[0].numpy()
  return x, t, context, want


# docs/formats.md's figure for both transformers; measured 6e-7–1.4e-6 (outputs up to ~4.4).
TOLERANCE = 5e-6


def _check(got, want, what):
  err = np.abs(got - want).max()
  print(f"{what}: max abs err {err:.1e} (output scale {np.abs(want).max():.1f})")
  assert got.shape == want.shape and err <= TOLERANCE, err


# The released CogVideoX 1.5 config says patch_bias=false, yet diffusers' temporal patch
# (patch_size_t set) is a Linear with a bias whatever the flag says.
@pytest.mark.parametrize("patch_size_t,frames,patch_bias", [(None, 3, True), (2, 4, True),
                                                            (2, 4, False)])
def test_cogvideox_matches_diffusers(patch_size_t, frames, patch_bias):
  model = _cogvideox(patch_size_t, patch_bias)
  assert model.patch_embed.proj.bias is not None
  x, t, context, want = _cogvideox_reference(model, frames)
  settings = cogvideox_model_config(dict(model.config))
  assert settings["layout"] == "expert"
  got = _ours(settings, convert_cogvideox(_state(model), settings), x, t, context, 2)
  _check(got, want, f"CogVideoX patch_size_t={patch_size_t} patch_bias={patch_bias}")


def test_wan_matches_diffusers():
  torch, diffusers = _diffusers()
  torch.manual_seed(0)
  model = _random(diffusers.WanTransformer3DModel(**WAN))
  torch.manual_seed(2)
  x, context, t = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 6, 12), torch.tensor([10.0, 500.0])
  with torch.no_grad():
    want = model(x, t, context, return_dict=False)[0].numpy()
  settings = wan_model_config(dict(model.config))
  assert (settings["layout"], settings["adaln"]) == ("joint", "single")
  got = _ours(settings, convert_wan(_state(model), settings), x, t, context, 1)
  _check(got, want, "Wan")


def test_unsupported_variants_are_refused():
  with pytest.raises(ValueError, match="2B-style 3D sin-cos positions"):
    cogvideox_model_config({**COGVIDEOX, "use_rotary_positional_embeddings": False})
  with pytest.raises(ValueError, match="patch_bias=False: only a biased patch embedding"):
    cogvideox_model_config({**COGVIDEOX, "patch_bias": False})  # 1.0's Conv2d honours it
  for bad, message in (({"num_attention_heads": 0}, "num_attention_heads=0: must be a whole"),
                       ({"patch_size": "2"}, "patch_size='2': must be a whole"),
                       ({"norm_eps": -1.0}, r"norm_eps=-1.0: must be in \(0, 1\)")):
    with pytest.raises(ValueError, match=message):
      cogvideox_model_config({**COGVIDEOX, **bad})
  with pytest.raises(ValueError, match=r"patch_size=\[1, 2\]: must be 3 whole numbers"):
    wan_model_config({**WAN, "patch_size": [1, 2]})
  with pytest.raises(ValueError, match="image-to-video"):
    wan_model_config({**WAN, "image_dim": 32})


def test_bad_state_dicts_are_refused():
  model = _cogvideox()
  settings = cogvideox_model_config(dict(model.config))
  state = _state(model)
  with pytest.raises(ValueError, match="lacks 'proj_out.bias'"):
    convert_cogvideox({k: v for k, v in state.items() if k != "proj_out.bias"}, settings)
  with pytest.raises(ValueError, match="1 unexpected tensors: extra.weight"):
    convert_cogvideox({**state, "extra.weight": np.zeros(1)}, settings)


def test_convert_cli_export_reproduces_diffusers(tmp_path):
  """SRC folder → `videogen.convert` → an export whose params, restored through the model's
  own shardings, give diffusers' output. The source is shaped like the released CogVideoX 1.5
  config: patch_size_t 2 with patch_bias false."""
  from videogen import checkpoints
  from videogen.models.text_to_video import build_model, param_shardings
  from videogen.parallel import mesh as mesh_lib
  model = _cogvideox(patch_size_t=2, patch_bias=False)
  model.save_pretrained(tmp_path / "cogvideox")
  out = tmp_path / "export"
  run_cli("videogen.convert", "--from", "diffusers-cogvideox", str(tmp_path / "cogvideox"),
          "--to", str(out), check=True)
  config = checkpoints.load_config(str(out))
  assert config.model.layout == "expert" and config.text.max_length == 226
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:1])
  dit = build_model(config, 0, config.model.text_dim)
  assert tuple(config.model.patch_size) == (2, 2, 2)
  abstract, shardings = param_shardings(dit, config, mesh, (), latent_shape=(4, 8, 8, 4))
  with jax.set_mesh(mesh):
    params = checkpoints.load_ema_params(str(out), abstract, shardings)
  unrolled = stack_blocks(convert_cogvideox(_state(model), cogvideox_model_config(
      dict(model.config))), 2)
  for a, b in zip(jax.tree.leaves(params["dit"]), jax.tree.leaves(unrolled)):
    np.testing.assert_array_equal(np.asarray(a), b)
  result = run_cli("videogen.convert", "--from", "diffusers-wan", str(tmp_path / "cogvideox"),
                   "--to", str(tmp_path / "wrong"))
  assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("preset,reference", [
    ("wan_1_3b", lambda diffusers: diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30)),
    ("cogvideox_5b", lambda diffusers: diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=48, attention_head_dim=64, num_layers=42,
        use_rotary_positional_embeddings=True))])
def test_preset_param_counts_equal_the_diffusers_models(preset, reference):
  """model_info's eval_shape count of a look-alike preset equals the real architecture's
  (diffusers on torch's meta device: nothing allocated on either side)."""
  import json
  torch, diffusers = _diffusers()
  result = run_cli("videogen.model_info", f"--config=configs/dit_family.py:{preset}",
                   check=True)
  with torch.device("meta"):
    want = sum(p.numel() for p in reference(diffusers).parameters())
  assert json.loads(result.stdout)["params"] == want
