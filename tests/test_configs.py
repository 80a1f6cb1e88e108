"""Every shipped config file and every variant it names loads and passes `validate`, as
`--config=configs/X.py:variant` would at start-up (no model built, nothing trained)."""
import importlib.util
import pathlib
import re

import pytest

from videogen.config import load_config_file
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
