"""Every shipped config file and every variant it names loads and passes `validate`, as
`--config=configs/X.py:variant` would at start-up (no model built, nothing trained); each
constraint across config sections (videogen/validate.py) is one line when broken."""
import importlib.util
import pathlib
import re

import pytest

from conftest import tiny_config
from videogen.config import ConfigError, load_config_file
from videogen.validate import validate

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
# Module-level tables of size/preset names a config file accepts as its variant.
TABLES = ("SIZES", "DIT_SIZES", "LOOKALIKES")


def _variants(path: pathlib.Path) -> list[str]:
  """"" (no variant) where the file accepts none, every `arg == "name"` branch, and the keys
  of its size/preset tables."""
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  names = set(re.findall(r'arg == "(\w+)"', path.read_text()))
  for table in TABLES:
    names |= set(getattr(module, table, {}))
  try:
    module.get_config()
    names.add("")
  except ValueError:  # a size variant is required (configs/scaling.py)
    pass
  return sorted(names)


SHIPPED = [f"{path.name}:{variant}" if variant else path.name
           for path in sorted(CONFIGS.glob("*.py")) for variant in _variants(path)]


def test_every_config_file_is_listed_with_its_variants():
  files = {name.partition(":")[0] for name in SHIPPED}
  assert files == {p.name for p in CONFIGS.glob("*.py")}
  assert {"tiny.py:test", "vae_tiny.py:test", "scaling.py:xs", "dit_family.py:wan_1_3b",
          "latent_tiny.py:cached"} <= set(SHIPPED)
  assert "scaling.py" not in SHIPPED  # it needs a size


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_validates(name):
  validate(load_config_file(str(CONFIGS / name)))


@pytest.mark.parametrize("path,message", [("scaling.py", "needs a size variant"),
                                          ("scaling.py:huge", "needs a size variant"),
                                          ("tiny.py:nope", "no variant"),
                                          ("dit_family.py:nope", "no variant")])
def test_an_unknown_variant_is_refused_by_name(path, message):
  with pytest.raises(ValueError, match=message):
    load_config_file(str(CONFIGS / path))


def _manifest(tmp_path) -> str:
  path = tmp_path / "clips.csv"
  path.write_text("path,caption\n")
  return str(path)


# Each constraint across sections (videogen/validate.py), broken once on the suite's config.
CROSS_KEY = [
    ({"model.sequence_parallel": "ulysses", "mesh.tensor": 2, "mesh.sequence": 2},
     r"splits heads over tensor × sequence: model.num_heads=2 must divide by 2 × 2"),
    ({"model.camera": True, "data.source": "videos"}, r"model.camera .* has no cameras"),
    ({"model.text_layers": 1, "text.encoder": "t5"},
     r"model.text_layers=1 encodes the trainable caption embedding; text.encoder='t5'"),
    ({"model.text_conv": 9, "text.encoder": "t5"},
     r"model.text_conv=9 encodes the trainable caption embedding; text.encoder='t5'"),
    ({"eval.every_steps": 10, "data.source": "videos"},
     r"eval.every_steps .* needs task='dit' and data.source='synthetic'"),
    ({"eval.every_steps": 10, "task": "vae", "data.num_frames": 5},
     r"eval.every_steps .* needs task='dit' and data.source='synthetic'"),
    ({"data.height": 20}, r"data.height=20 is not divisible by its model.patch_size entry 8"),
    ({"data.num_frames": 5}, r"data.num_frames=5 is not divisible by its model.patch_size"),
    ({"vae.tile": 12}, r"vae.tile=12 and vae.tile_overlap=64 must be multiples of 8"),
    ({"vae.tile": 16, "vae.tile_overlap": 4}, r"must be multiples of 8 with 0 <= overlap"),
    ({"vae.tile": 16, "vae.tile_overlap": 16}, r"must be multiples of 8 with 0 <= overlap"),
    ({"data.source": "latents", "data.latents_path": "latents"},
     r"data.source='latents' needs data.latents_path and vae.checkpoint"),
    ({"sample.eta": 0.5, "sample.sampler": "heun"},
     r"sample.eta=0.5: stochastic flow steps take the euler sampler and 0 <= eta <= 1"),
    ({"sample.eta": 1.5}, r"sample.eta=1.5: stochastic flow steps take the euler sampler"),
    ({"model.token_adaln": True, "model.layout": "expert"},
     r"model.token_adaln reads each block's text cross-attention, which model.layout='expert'"),
]


@pytest.mark.parametrize("overrides,message", CROSS_KEY)
def test_each_cross_section_constraint_is_one_line(tmp_path, overrides, message):
  if overrides.get("data.source") == "videos":
    overrides = {**overrides, "data.manifest": _manifest(tmp_path)}
  with pytest.raises(ConfigError, match=message) as error:
    validate(tiny_config(**overrides))
  assert "\n" not in str(error.value)


def test_the_cross_section_constraints_pass_when_met(tmp_path):
  validate(tiny_config(**{"model.sequence_parallel": "ulysses", "mesh.tensor": 2,
                          "model.num_heads": 4, "model.width": 32}))
  validate(tiny_config(**{"data.source": "videos", "data.manifest": _manifest(tmp_path)}))
  validate(tiny_config(**{"vae.tile": 16, "vae.tile_overlap": 8}))
  # A latent DiT's patch is checked against its VAE's latents when the VAE loads, not here.
  validate(tiny_config(**{"vae.checkpoint": "runs/vae", "data.height": 20}))
