"""Every numeric config key has a valid range, checked at start-up: a degenerate value is one
`invalid config:` line naming the key, never a traceback deep in the model or a silent run."""
import os

import ml_collections
import pytest

from conftest import one_line_error, run_cli, tiny_config
from videogen.config import NUMERIC_RANGES, ConfigError, base_config
from videogen.validate import validate

# Keys whose values are tables, checked by the code that reads them (buckets, filters, stages).
TABLES = ("data.buckets.sizes", "data.filters.min_scores", "train.stages")

# The ten degenerate values that used to end in a traceback or train silently.
DEGENERATE = [("model.num_heads", 0), ("model.patch_size", (1, 0, 4)), ("data.height", 0),
              ("data.num_frames", 0), ("data.width", 0), ("model.depth", 0),
              ("train.learning_rate", -1e-3), ("train.caption_dropout", 1.5),
              ("train.ema_decay", -0.1), ("train.warmup_steps", -5),
              ("sample.guidance_min_noise", 1.0)]  # guidance at no step


def _numeric_leaves(node, prefix=""):
  for name, value in node.items():
    key = prefix + name
    if key in TABLES:
      continue
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from _numeric_leaves(value, key + ".")
    elif not isinstance(value, (bool, str)) and (
        isinstance(value, (int, float)) or value is None
        or (isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value))):
      yield key


def test_every_numeric_key_has_a_range():
  leaves = set(_numeric_leaves(base_config()))
  assert leaves - set(NUMERIC_RANGES) == set()
  validate(tiny_config())  # the defaults and the suite's config are in range


@pytest.mark.parametrize("key,value", DEGENERATE)
def test_each_degenerate_value_is_one_line_naming_the_key(key, value):
  with pytest.raises(ConfigError) as error:
    validate(tiny_config(**{key: value}))
  message = str(error.value)
  assert message.startswith(f"{key}={value!r} must be ") and "\n" not in message, message


def test_non_finite_values_are_refused():
  for key, value in (("train.learning_rate", float("nan")), ("vae.kl_weight", float("inf")),
                     ("diffusion.logit_mean", float("-inf"))):
    with pytest.raises(ConfigError, match=f"^{key}="):
      validate(tiny_config(**{key: value}))


@pytest.mark.parametrize("override,message", [
    ("--config.model.num_heads=0", "error: invalid config: model.num_heads=0 must be a whole "
     "number >= 1"),
    ("--config.train.learning_rate=-0.001", "error: invalid config: train.learning_rate=-0.001 "
     "must be > 0")])
def test_the_cli_refuses_at_start_up(tmp_path, override, message):
  result = run_cli("videogen.train", "--config=configs/tiny.py:test",
                   f"--workdir={tmp_path / 'run'}", override, timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert one_line_error(result) == message
  assert not os.path.exists(tmp_path / "run")
