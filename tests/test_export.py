"""`videogen.export --format orbax|safetensors|diffusers|stablehlo`: each export loads back to
the same outputs; bad requests are one `error:` line."""
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from conftest import one_line_error, run_cli
from videogen import checkpoints
from videogen.formats.weight_files import read_safetensors
from videogen.sampling.generator import Generator

TEST_CONFIG = "configs/tiny.py:test"
PROMPTS = ["a red circle moving right", "a blue square moving up"]


@pytest.fixture(scope="module")
def generator(trained):
  return Generator.load(str(trained))


def _sample(generator, prompts, seed=3):
  shape = generator.sample_shape(len(prompts))
  return np.asarray(generator.sample(prompts, shape, generator.options(shape), seed=seed))


def test_safetensors_export_samples_like_the_workdir(trained, generator, tmp_path):
  out = tmp_path / "st"
  run_cli("videogen.export", f"--workdir={trained}", f"--output={out}", "--format=safetensors",
          check=True)
  assert sorted(os.listdir(out)) == ["config.json", "metadata.json", "model.safetensors"]
  names = read_safetensors(str(out / "model.safetensors"))
  assert "dit/blocks/self_attn/query_kernel" in names, sorted(names)[:5]
  loaded = Generator.load(str(out))  # told from an Orbax export by its files
  for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(generator.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(_sample(loaded, PROMPTS), _sample(generator, PROMPTS))
  # bfloat16 on disk; loaded back as the model's f32.
  checkpoints.export_safetensors(str(tmp_path / "bf16"), generator.params, generator.config,
                                 dtype="bfloat16")
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), generator.params)
  half = checkpoints.load_safetensors_params(str(tmp_path / "bf16"), abstract)
  for a, b in zip(jax.tree.leaves(half), jax.tree.leaves(generator.params)):
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.asarray(b).astype(jax.numpy.bfloat16).astype(np.float32))
  with pytest.raises(ValueError, match="lacks 1 params: extra"):
    checkpoints.load_safetensors_params(str(out), {**abstract, "extra": abstract["dit"][
        "patch_embed"]["bias"]})


def test_orbax_export_restores_onto_another_mesh(generator, tmp_path):
  """Written from one device (as the CLI writes it; test_cli covers the CLI), restored
  sharded over data × fsdp × tensor = 2 × 2 × 2. (One device: orbax's first save of
  8-device arrays costs ~4.5 s on CPU.)"""
  checkpoints.export_params(str(tmp_path / "o"), jax.device_put(
      generator.params, jax.devices()[0]), generator.config)
  mesh = ml_collections.ConfigDict({**generator.config.mesh.to_dict(), "data": 2, "fsdp": 2,
                                    "tensor": 2})
  loaded = Generator.load(str(tmp_path / "o"), mesh_config=mesh)
  assert dict(loaded.mesh.shape) != dict(generator.mesh.shape)
  for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(generator.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(loaded.params))


def test_stablehlo_sampler_runs_without_the_model_and_matches_generate(trained, generator,
                                                                       tmp_path):
  out = tmp_path / "hlo"
  run_cli("videogen.export", f"--workdir={trained}", f"--output={out}", "--format=stablehlo",
          check=True)
  assert sorted(os.listdir(out)) == ["config.json", "metadata.json", "sampler.json",
                                     "sampler.stablehlo"]
  signature = json.loads((out / "sampler.json").read_text())
  assert signature["output"]["shape"] == ["b", 4, 16, 16, 3]
  exported = jax.export.deserialize(bytearray((out / "sampler.stablehlo").read_bytes()))
  for prompts in (PROMPTS, PROMPTS[:1]):  # one program, two batch sizes
    inputs = (*generator.text.conditional(prompts), *generator.text.unconditional(len(prompts)))
    assert [list(np.shape(x))[1:] for x in inputs] == [
        i["shape"][1:] for i in signature["inputs"][:6]]
    got = np.asarray(exported.call(*inputs, jax.random.PRNGKey(3)))
    np.testing.assert_allclose(got, _sample(generator, prompts), atol=1e-5, rtol=0)
  # `sample --checkpoint` on it samples (the export is the whole sampler), as the model does.
  run_cli("videogen.sample", f"--checkpoint={out}", f"--prompt={PROMPTS[0]}", "--seed=3",
          f"--output={tmp_path}/hlo.gif", check=True)
  from videogen import video_io
  video_io.write_video(str(tmp_path / "model.gif"), generator.decode(
      jax.numpy.asarray(_sample(generator, PROMPTS[:1])))[0], fps=generator.config.sample.fps)
  np.testing.assert_array_equal(video_io.read_video(str(tmp_path / "hlo.gif")),
                                video_io.read_video(str(tmp_path / "model.gif")))
  line = one_line_error(run_cli("videogen.sample", f"--checkpoint={out}", "--prompt=a",
                                f"--output={tmp_path}/x.gif", "--steps=3", timeout=60))
  assert "is a stablehlo export" in line and "drop --steps" in line


def test_bad_format_and_models_without_a_diffusers_counterpart_are_one_line(trained, tmp_path):
  assert "format" in one_line_error(run_cli(
      "videogen.export", f"--workdir={trained}", f"--output={tmp_path}/x", "--format=onnx",
      timeout=60))
  line = one_line_error(run_cli("videogen.export", f"--workdir={trained}",
                                f"--output={tmp_path}/y", "--format=diffusers", timeout=60))
  # Every mismatching setting at once, each with the value it needs.
  for setting in ("text.encoder='embedding' (needs 't5'", "model.adaln='per_block' (needs "
                  "'single')", "model.rope_split='cogvideox'", "model.qk_norm='rms'",
                  "model.text_projection='linear'", "model.pooled_text=True"):
    assert setting in line, line
  assert "5 settings with no WanTransformer3DModel counterpart" in line and "tiny.py:wan" in line
  assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "y")
  from videogen.formats.diffusers_dit import diffusers_config
  model = checkpoints.load_config(str(trained)).model.to_dict()
  with pytest.raises(ValueError, match="model.layout='factorized' has no diffusers"):
    diffusers_config({**model, "layout": "factorized"}, 16)
  with pytest.raises(ValueError, match="model.camera=True"):
    diffusers_config({**model, "camera": True}, 16)
  with pytest.raises(ValueError, match=r"model.head_mlp_ratio=2.0 \(needs 0.0\)"):
    diffusers_config({**model, "head_mlp_ratio": 2.0}, 16)
  with pytest.raises(ValueError, match=r"model.self_condition=True \(needs False\)"):
    diffusers_config({**model, "self_condition": True}, 16)
  with pytest.raises(ValueError, match=r"model.registers=4 \(needs 0\)"):
    diffusers_config({**model, "registers": 4}, 16)
  with pytest.raises(ValueError, match="diffusion.prediction='x0' .needs 'velocity'"):
    diffusers_config(model, 16, prediction="x0")


def test_tiny_wan_variant_trains_a_model_that_exports_to_diffusers(tmp_path):
  """configs/tiny.py:wan (at the test config's sizes), trained 2 steps, exports with
  --format diffusers to a WanTransformer3DModel that diffusers builds and loads strictly."""
  from conftest import REPO
  from videogen.config import load_config_file
  from videogen.training import loop
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py:wan"))
  config.model.update(width=32, depth=2, num_heads=2, patch_size=(2, 8, 8))
  config.data.update(num_frames=4, height=16, width=16)
  config.train.update(num_steps=2, batch_size=8, warmup_steps=1, log_every=1)
  config.checkpoint.update(every_steps=2)
  loop.train(config, str(tmp_path / "run"))
  run_cli("videogen.export", f"--workdir={tmp_path}/run", f"--output={tmp_path}/hf",
          "--format=diffusers", check=True)
  pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  from safetensors.torch import load_file
  folder = tmp_path / "hf" / "transformer"
  model = diffusers.WanTransformer3DModel.from_config(json.loads((folder / "config.json")
                                                                 .read_text()))
  model.load_state_dict(load_file(str(folder / "diffusion_pytorch_model.safetensors")),
                        strict=True)
  assert model.config.num_layers == 2 and model.config.text_dim == 32


@pytest.mark.parametrize("kind,dtype", [("cogvideox", "float32"), ("cogvideox_t", "float32"),
                                        ("wan", "bfloat16")])
def test_diffusers_export_gives_back_the_imported_state_dict(kind, dtype, tmp_path):
  """tiny random diffusers model → our importer → an export as `videogen.convert` writes it →
  what `videogen.export --format diffusers` does with it → the same state dict, tensor for
  tensor, which a diffusers model built from the written config.json loads."""
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  from test_dit_convert import COGVIDEOX, WAN, _random, _state
  from videogen.config import base_config
  from videogen.formats.diffusers_dit import dit_params, export_diffusers_dit
  from videogen.formats import diffusers_dit
  from videogen.formats.weight_files import load_state_dict
  torch.manual_seed(0)
  if kind == "wan":
    model = _random(diffusers.WanTransformer3DModel(**WAN))
    settings = diffusers_dit.wan_model_config(dict(model.config))
    params = diffusers_dit.convert_wan(_state(model), settings)
  else:
    model = _random(diffusers.CogVideoXTransformer3DModel(
        **COGVIDEOX, patch_size_t=2 if kind == "cogvideox_t" else None))
    settings = diffusers_dit.cogvideox_model_config(dict(model.config))
    params = diffusers_dit.convert_cogvideox(_state(model), settings)
  config = base_config()
  config.model.update(**settings)
  config.text.update(encoder="t5", max_length=6)
  params = {"dit": diffusers_dit.stack_blocks(params, settings["depth"])}
  checkpoints.export_params(str(tmp_path / "ours"), jax.device_put(params, jax.devices()[0]),
                            config)
  export_diffusers_dit(str(tmp_path / "out"), dit_params(str(tmp_path / "ours"), config),
                       config, dtype)
  folder = tmp_path / "out" / "transformer"
  assert sorted(os.listdir(folder)) == ["config.json", "diffusion_pytorch_model.safetensors"]
  want = _state(model)
  got = load_state_dict(str(folder))
  assert set(got) == set(want)
  for key, value in want.items():
    cast = value.astype(jax.numpy.dtype(dtype))
    np.testing.assert_array_equal(got[key], cast, err_msg=key)
  reloaded = type(model).from_config(json.loads((folder / "config.json").read_text()))
  reloaded.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32))
                            for k, v in got.items()}, strict=True)  # the (bf16) file as is
