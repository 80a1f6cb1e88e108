"""The T5 text path end to end: tokenizer in the workdir, frozen encoder in the step or a
cache from `encode_text`, null embeddings, guidance, sampling, export, recaptioning."""
import json
import re
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed, run_cli, tiny_config
from videogen.config import ConfigError
from videogen.data import pipeline
from videogen.data.recaption import RecaptionError, Recaptioner
from videogen.data.synthetic import VOCABULARY
from videogen.diffusion.guidance import guided
from videogen.models.text_to_video import build_model, example_inputs
from videogen.parallel import mesh as mesh_lib
from videogen.sampling.generator import Generator
from videogen.text import embedding_cache
from videogen.text.conditioning import TOKENIZER_TRAINING_CAPTIONS, TextConditioning
from videogen.training import loop
from videogen.training.tasks import build_task
from videogen.training.metrics import read_metrics

T5_TEXT = {"text.tokenizer": "sentencepiece", "text.encoder": "t5", "text.null": "learned"}


def t5_config(**overrides):
  return tiny_config(**{**T5_TEXT, "data.synthetic.num_clips": 64, "train.num_steps": 3,
                        "checkpoint.every_steps": 3, **overrides})


def _conditioning(config, run_dir):
  mesh = mesh_lib.create_mesh(config.mesh)
  return TextConditioning.create(
      config, run_dir, mesh, mesh_lib.rules_from_config(config.mesh), vocabulary=VOCABULARY,
      training_captions=lambda: pipeline.source_captions(config, TOKENIZER_TRAINING_CAPTIONS))


@pytest.fixture(scope="module")
def t5_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("t5_run"))
  loop.train(t5_config(), workdir)
  return workdir


def _losses(workdir):
  return [m["loss"] for m in read_metrics(workdir) if "loss" in m]


def test_cached_embeddings_train_exactly_like_encoding_in_the_step(t5_run, tmp_path):
  """encode_text's cache (valid positions only, zero-padded on read) feeds the same numbers
  as the frozen T5 inside the jitted step, so the runs match loss for loss."""
  cache = str(tmp_path / "cache")
  result = run_cli("videogen.encode_text", "--config", "configs/tiny.py:test",
                   *[f"--config.{k}={v}" for k, v in T5_TEXT.items()],
                   "--config.data.synthetic.num_clips=64", f"--workdir={t5_run}",
                   f"--output={cache}", "--num_clips=64", check=True)
  assert "distinct captions of 64" in result.stdout
  tokenizer = os.path.join(t5_run, "spiece.model")
  cached = loop.train(t5_config(**{"text.embeddings_path": cache,
                                   "text.tokenizer_path": tokenizer}), str(tmp_path / "cached"))
  np.testing.assert_allclose(_losses(str(tmp_path / "cached")), _losses(t5_run), rtol=1e-5)
  in_step = Generator.load(t5_run).params
  for a, b in zip(jax.tree.leaves(in_step), jax.tree.leaves(cached.ema)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_the_workdir_tokenizer_learns_whole_words(t5_run):
  from videogen.text.sentencepiece_tokenizer import SentencePieceTokenizer
  tokenizer = SentencePieceTokenizer(os.path.join(t5_run, "spiece.model"), 16)
  tokens, mask = tokenizer.encode(["a red circle moving right"])
  assert mask.sum() <= 6  # five words + EOS: nothing a 16-token caption must truncate
  assert tokenizer.decode(tokens[0]) == "a red circle moving right"


def test_a_cache_from_another_text_setup_is_refused(t5_run, tmp_path):
  config = t5_config(**{"text.tokenizer_path": os.path.join(t5_run, "spiece.model")})
  conditioning = _conditioning(config, None)
  cache = str(tmp_path / "cache")
  embedding_cache.write_cache(conditioning, ["a red circle moving right"], cache)
  features = build_task(
      t5_config(**{"text.tokenizer_path": config.text.tokenizer_path,
                   "text.embeddings_path": cache}), conditioning.mesh, conditioning.rules
  ).text_features
  batch = features(["a red circle moving right"])
  assert batch["text_embedding"].shape == (1, 16, conditioning.dim)
  with pytest.raises(embedding_cache.MissingCaptionError, match="a blue square"):
    features(["a blue square moving up"])
  other = t5_config(**{"text.tokenizer_path": config.text.tokenizer_path,
                       "text.embeddings_path": cache, "text.t5.seed": 1})
  with pytest.raises(ConfigError, match="t5_seed=0 but the config has 1"):
    build_task(other, conditioning.mesh, conditioning.rules)


@pytest.mark.parametrize("null", ["learned", "zero"])
def test_dropped_rows_ignore_the_caption(null):
  """With a null embedding of the DiT's own, a dropped row's output does not depend on the
  text it was given; a kept row's does."""
  config = tiny_config(**{"text.null": null})
  model = build_model(config, 0, text_dim=8)
  x, t, text, mask, _ = example_inputs(config, model, batch=2)
  x = jax.random.normal(jax.random.key(0), x.shape)
  params = model.init(jax.random.key(1), x, t, text, mask, jnp.zeros((2,), bool))["params"]
  params = perturbed(params, 0.05)  # wake the zero-initialised gates
  a, b = (jax.random.normal(jax.random.key(k), text.shape) for k in (3, 4))
  drop = jnp.array([True, False])
  out_a, out_b = (model.apply({"params": params}, x, t, s, mask, drop) for s in (a, b))
  np.testing.assert_allclose(out_a[0], out_b[0], atol=1e-6)
  assert np.abs(out_a[1] - out_b[1]).max() > 1e-3
  assert ("null_text" in params) == (null == "learned")


def test_guidance_scale_interpolates_between_unconditional_and_conditional(t5_run):
  """Through the real model: scale 1 is the conditional prediction, 0 the unconditional
  (here the learned null), 2 extrapolates: the batched two-branch call keeps them apart."""
  generator = Generator.load(t5_run)
  cond = generator.text.conditional(["a red circle moving right"] * 2)
  null = generator.text.unconditional(2)
  assert bool(null[2].all())

  def denoise(x, t, c):
    return generator.model.apply({"params": generator.params}, x, t, *c)

  x = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))
  t = jnp.array([300.0, 600.0])
  want_cond, want_uncond = denoise(x, t, cond), denoise(x, t, null)
  assert np.abs(want_cond - want_uncond).max() > 1e-4
  for scale, want in [(1.0, want_cond), (0.0, want_uncond),
                      (2.0, 2 * want_cond - want_uncond)]:
    np.testing.assert_allclose(guided(denoise, x, t, cond, null, scale), want, atol=2e-5)


def test_sampling_handles_empty_long_and_negative_prompts(t5_run):
  generator = Generator.load(t5_run)
  empty = generator([""], steps=2)
  assert empty.shape == (1, 4, 16, 16, 3)
  with pytest.warns(UserWarning, match="longer than text.max_length=16 tokens was truncated"):
    generator(["a red circle moving right " * 10], steps=2)
  plain = generator(["a red circle moving right"], steps=2, guidance=3.0)
  negative = generator(["a red circle moving right"], steps=2, guidance=3.0,
                       negative_prompt="a blue square moving left")
  assert not np.array_equal(plain, negative)


def test_export_carries_the_workdir_tokenizer(t5_run, tmp_path):
  export = str(tmp_path / "export")
  run_cli("videogen.export", f"--workdir={t5_run}", f"--output={export}", check=True)
  assert os.path.isfile(os.path.join(export, "spiece.model"))
  want = Generator.load(t5_run)(["a red circle moving right"], steps=2)
  np.testing.assert_array_equal(Generator.load(export)(["a red circle moving right"], steps=2),
                                want)
  os.remove(os.path.join(export, "spiece.model"))
  result = run_cli("videogen.sample", f"--checkpoint={export}", "--prompt=x",
                   f"--output={tmp_path / 'x.gif'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"error: {export} has no spiece.model (the run's tokenizer); set text.tokenizer_path or "
      f"train in this directory first"]


def _recaptioner(**settings):
  config = tiny_config()
  config.data.recaption.update(settings)
  return Recaptioner(config.data.recaption, seed=0)


def test_recaption_sidecar_replaces_or_augments(tmp_path):
  sidecar = tmp_path / "captions.jsonl"
  sidecar.write_text("".join(json.dumps({"index": i, "text": f"new {i}"}) + "\n"
                             for i in range(0, 200, 2)))
  replace = _recaptioner(path=str(sidecar))
  assert [replace(str(i), "old") for i in range(4)] == ["new 0", "old", "new 2", "old"]
  augment = _recaptioner(path=str(sidecar), mode="augment", prob=0.5)
  picks = [augment(str(i), "old") for i in range(0, 200, 2)]
  assert 30 < sum(p.startswith("new") for p in picks) < 70
  assert picks == [augment(str(i), "old") for i in range(0, 200, 2)]  # seeded, repeatable
  csv_sidecar = tmp_path / "captions.csv"
  csv_sidecar.write_text('path,text\nclips/a.mp4,"a dog, running"\n')
  assert _recaptioner(path=str(csv_sidecar))("clips/a.mp4", "old") == "a dog, running"


def test_recaption_callable_reaches_the_training_batches(tmp_path, monkeypatch):
  (tmp_path / "my_vlm.py").write_text(
      "def caption(text, key):\n  return text.upper() + ' #' + key\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  config = tiny_config(**{"data.recaption.callable": "my_vlm:caption"})
  batch = next(iter(pipeline.make_dataset(config)))
  assert all(re.fullmatch(r"A [A-Z ]+ #\d+", c) for c in batch["caption"]), batch["caption"]
  with pytest.raises(RecaptionError, match="my_vlm:nothing"):
    _recaptioner(callable="my_vlm:nothing")
  with pytest.raises(RecaptionError, match="row 1 needs a 'text'"):
    (tmp_path / "bad.jsonl").write_text('{"index": 1}\n')
    _recaptioner(path=str(tmp_path / "bad.jsonl"))
