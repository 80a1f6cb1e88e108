"""Parity of the CogVideoX weight importer against diffusers' own `AutoencoderKLCogVideoX`."""
import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import save_file

from conftest import run_cli
from videogen.formats import cogvideox_vae as convert
from videogen.vae import chunked
from videogen.vae.model import Autoencoder

# Four levels, so space is compressed 8× and time 4× as in the real model.
TINY = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 32), latent_channels=4,
            layers_per_block=1, norm_num_groups=4, temporal_compression_ratio=4)


def _randomize(module: torch.nn.Module) -> None:
  """Every parameter random and distinct (GroupNorm affine too), so a swapped or skipped
  mapping shows in the outputs."""
  with torch.no_grad():
    for name, p in module.named_parameters():
      if p.ndim == 1 and name.endswith("weight"):  # GroupNorm scales
        p.copy_(1 + 0.2 * torch.randn_like(p))
      elif p.ndim == 1:
        p.copy_(0.1 * torch.randn_like(p))
      else:
        fan_in = p[0].numel()
        p.copy_(torch.randn_like(p) / fan_in ** 0.5)


def _tiny_vae(**overrides) -> AutoencoderKLCogVideoX:
  torch.manual_seed(0)
  vae = AutoencoderKLCogVideoX(**{**TINY, **overrides}).eval()
  _randomize(vae)
  return vae


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  vae = _tiny_vae()
  folder = tmp_path_factory.mktemp("cogvideox_vae")
  vae.save_pretrained(folder, safe_serialization=True)
  return vae, folder


def _to_ours(x: torch.Tensor) -> jnp.ndarray:
  return jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1))  # NCTHW → BTHWC


def _to_torch_layout(y) -> np.ndarray:
  return np.asarray(y).transpose(0, 4, 1, 2, 3)  # BTHWC → NCTHW


def _diffusers_reference(vae, seed, video_shape, latent_shape):
  """Random (video, latents) NCTHW and what diffusers makes of them: (posterior, decoded)."""
  torch.manual_seed(seed)
  video = torch.rand(*video_shape) * 2 - 1
  latents = torch.randn(*latent_shape)
  with torch.no_grad():
    return video, latents, vae.encode(video).latent_dist, vae.decode(latents).sample.numpy()


TOLERANCE = 2e-5  # docs/vae.md's figure; measured 8e-7–6.7e-6 (moments up to ~1.5, videos ~7)


def _check(got, want, what):
  err = np.abs(got - want).max()
  print(f"{what}: max abs err {err:.1e} (scale {np.abs(want).max():.1f})")
  assert got.shape == want.shape and err <= TOLERANCE, err


def test_encoder_and_decoder_match_diffusers(saved):
  vae, folder = saved
  spec, params = convert.load_cogvideox_vae(folder)
  model = Autoencoder(spec)
  video, latents, posterior, want_video = _diffusers_reference(vae, 1, (1, 3, 9, 16, 24),
                                                               (1, 4, 3, 2, 3))
  mean, logvar = model.apply({"params": params}, _to_ours(video), method="encode")
  decoded = model.apply({"params": params}, _to_ours(latents), method="decode")
  assert _to_torch_layout(mean).shape == posterior.mean.shape == (1, 4, 3, 2, 3)
  assert _to_torch_layout(decoded).shape == want_video.shape == (1, 3, 9, 16, 24)
  _check(_to_torch_layout(mean), posterior.mean.numpy(), "mean")
  _check(_to_torch_layout(logvar), posterior.logvar.numpy(), "logvar")
  _check(_to_torch_layout(decoded), want_video, "decoded")


def test_spec_follows_config(saved):
  _, folder = saved
  spec, _ = convert.load_cogvideox_vae(folder)
  codec = spec.codecs[0]
  assert (spec.variant, spec.spatial_factor, spec.temporal_factor) == ("causal3d", 8, 4)
  assert (codec.block_channels, codec.latent_channels, codec.norm_groups,
          codec.norm_scope) == ((8, 16, 16, 32), 4, 4, "clip")


def test_torch_file_sharded_and_bf16_readers_agree(saved, tmp_path):
  vae, folder = saved
  reference = convert.load_state_dict(folder)
  state = vae.state_dict()
  assert set(reference) == set(state)
  torch.save(state, tmp_path / "vae.pt")
  from_torch = convert.load_state_dict(tmp_path / "vae.pt")
  vae.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
  assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").exists()
  from_shards = convert.load_state_dict(tmp_path / "sharded")
  for key, value in reference.items():
    np.testing.assert_array_equal(from_torch[key], value)
    np.testing.assert_array_equal(from_shards[key], value)
  save_file({k: v.bfloat16() for k, v in state.items()}, tmp_path / "bf16.safetensors")
  from_bf16 = convert.load_state_dict(tmp_path / "bf16.safetensors")
  key = "decoder.norm_out.conv_y.conv.weight"
  np.testing.assert_array_equal(np.asarray(from_bf16[key], np.float32),
                                state[key].bfloat16().float().numpy())


def test_weights_file_or_pipeline_folder_loads(saved, tmp_path):
  vae, folder = saved
  shutil.copytree(folder, tmp_path / "vae")  # a pipeline folder keeps the VAE in vae/
  weight = vae.state_dict()["encoder.down_blocks.0.downsamplers.0.conv.weight"].numpy()
  for path in (folder / "diffusion_pytorch_model.safetensors", tmp_path):
    _, params = convert.load_cogvideox_vae(path)
    kernel = params["encoder"]["down_blocks_0_downsampler"]["conv"]["kernel"]
    np.testing.assert_array_equal(kernel, weight.transpose(2, 3, 1, 0)[None])


def test_unexpected_or_missing_keys_are_named(saved):
  _, folder = saved
  spec, _ = convert.load_cogvideox_vae(folder)
  state = convert.load_state_dict(folder)
  with pytest.raises(ValueError, match="1 unused: encoder.bogus.weight"):
    convert.convert_state_dict({**state, "encoder.bogus.weight": np.zeros(3)}, spec)
  del state["decoder.norm_out.norm_layer.weight"]
  with pytest.raises(ValueError, match="1 missing: decoder.norm_out.norm_layer.weight"):
    convert.convert_state_dict(state, spec)


def test_wrong_shapes_are_named(saved):
  _, folder = saved
  spec, _ = convert.load_cogvideox_vae(folder)
  state = convert.load_state_dict(folder)
  state["encoder.conv_in.conv.weight"] = np.zeros((8, 3, 3, 3, 5), np.float32)
  with pytest.raises(ValueError, match="wrong shape: encoder.conv_in.conv.weight"):
    convert.convert_state_dict(state, spec)


def test_quant_convs_map_to_the_top_level_keys():
  vae = _tiny_vae(latent_channels=3, use_quant_conv=True, use_post_quant_conv=True)
  spec = convert.spec_from_diffusers_config(dict(vae.config))
  state = {k: v.numpy() for k, v in vae.state_dict().items()}
  params = convert.convert_state_dict(state, spec)
  np.testing.assert_array_equal(params["encoder"]["quant_conv"]["kernel"],
                                state["quant_conv.weight"].transpose(2, 3, 4, 1, 0))
  np.testing.assert_array_equal(params["decoder"]["post_quant_conv"]["bias"],
                                state["post_quant_conv.bias"])


@pytest.mark.parametrize("override, message", [
    (dict(use_quant_conv=True), "use_post_quant_conv"),
    (dict(out_channels=1), "out_channels=1 must equal in_channels=3"),
    (dict(norm_eps=1e-5), "norm_eps=1e-05"),
    (dict(temporal_compression_ratio=3), "power of two"),
    (dict(latent_channels=0), "latent_channels=0 must be a whole number"),
    (dict(block_out_channels=[8, "16"]), "block_out_channels=.* must be whole numbers"),
    (dict(scaling_factor=float("inf")), "scaling_factor=inf must be a finite number > 0"),
])
def test_unsupported_configs_are_refused(override, message):
  with pytest.raises(ValueError, match=message):
    convert.spec_from_diffusers_config({**TINY, **override})


def test_missing_files_are_one_line_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no weights at"):
    convert.load_state_dict(tmp_path / "nope.safetensors")
  with pytest.raises(FileNotFoundError, match="holds none of diffusion_pytorch_model"):
    convert.load_state_dict(tmp_path)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    convert.load_cogvideox_vae(tmp_path)
  (tmp_path / "index.safetensors.index.json").write_text(
      json.dumps({"weight_map": {"a": "shard-1.safetensors"}}))
  with pytest.raises(FileNotFoundError, match="names shard shard-1.safetensors"):
    convert.load_state_dict(tmp_path / "index.safetensors.index.json")


@pytest.mark.parametrize("frames", [17, 13])
def test_chunked_codec_matches_diffusers_frame_batches(saved, frames):
  """diffusers encodes 8 frames at a time, its first batch taking the remainder (17 = 9 + 8,
  13 = one batch), and decodes 2 latent frames at a time, each batch with its own clip
  GroupNorm; `chunked` batches an imported VAE the same way. Latents match for every
  1 + 4k frames; decoded videos for odd latent counts, while for even ones (13 frames → 4
  latents) diffusers returns 4·T' frames where a causal clip has 1 + 4(T' − 1)."""
  vae, folder = saved
  spec, params = convert.load_cogvideox_vae(folder)
  model = Autoencoder(spec)
  latent_frames = 1 + (frames - 1) // 4
  video, latents, posterior, want_video = _diffusers_reference(
      vae, 2, (1, 3, frames, 16, 8), (1, 4, latent_frames, 2, 1))
  assert len(chunked.chunk_bounds(frames, 8, remainder_first=True)) == frames // 8
  moments = chunked.encode(model, params, _to_ours(video), chunk_frames=8)
  _check(_to_torch_layout(moments)[:, :4], posterior.mean.numpy(), f"{frames}-frame latents")
  decoded = _to_torch_layout(chunked.decode(model, params, _to_ours(latents), chunk_latents=2))
  if latent_frames % 2:
    _check(decoded, want_video, f"{frames}-frame video")
  else:
    assert (decoded.shape[2], want_video.shape[2]) == (frames, 4 * latent_frames)


def test_import_cli_writes_an_export_a_dit_can_name_as_its_vae(saved, tmp_path):
  import jax
  from videogen.parallel import mesh as mesh_lib
  from videogen.vae.latents import FrozenVae
  vae, folder = saved
  run_cli("videogen.convert", "--from", "diffusers-cogvideox-vae", str(folder),
          "--to", str(tmp_path / "out"), check=True)
  loaded = FrozenVae.load(str(tmp_path / "out"), mesh_lib.create_mesh(
      {"data": 1, "fsdp": 1, "tensor": 1, "sequence": 1}, jax.devices()[:1]), ())
  assert loaded.stats["std"] == pytest.approx([1 / vae.config.scaling_factor] * 4)
  torch.manual_seed(3)
  latents = torch.randn(1, 4, 3, 2, 3)
  with torch.no_grad():
    want = vae.decode(latents / vae.config.scaling_factor).sample.numpy()
  # FrozenVae.decode takes normalised latents: z_norm = z * scaling_factor.
  _check(_to_torch_layout(loaded.decode(_to_ours(latents))), want, "export's decoded")


def test_import_cli_reports_a_missing_input_in_one_line(tmp_path):
  result = run_cli("videogen.convert", "--from", "diffusers-cogvideox-vae",
                   str(tmp_path / "nope"), "--to", str(tmp_path / "out"))
  assert result.returncode == 2
  assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1, result.stderr
