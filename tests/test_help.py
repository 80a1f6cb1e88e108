"""Every entry point (`python -m videogen.X` for each videogen/X.py with a `main`) answers
`--help`, `-h` and `--helpfull` with a usage line and its flags, exit 0, before jax loads."""
import ast
import glob
import os
import re
import subprocess
import sys

from conftest import REPO

ENTRY_POINTS = sorted(
    os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, "videogen", "*.py"))
    if re.search(r"^def main\(", open(path).read(), re.M))


def _own_flags(module: str) -> list[str]:
  source = open(os.path.join(REPO, "videogen", f"{module}.py")).read()
  return re.findall(r"(?:DEFINE_\w+|DEFINE_config_file)\(\s*\"(\w+)\"", source)


def test_every_entry_point_answers_help_quickly_and_before_jax():
  assert {"train", "sample", "export", "evaluate", "convert", "prepare_data",
          "encode_text", "aot", "model_info", "bench", "report"} <= set(ENTRY_POINTS)
  for module in ENTRY_POINTS:
    for flag in ("--help", "-h", "--helpfull") if module in ("train", "sample") else ("--help",):
      result = subprocess.run([sys.executable, "-X", "importtime", "-m", f"videogen.{module}",
                               flag], cwd=REPO, capture_output=True, text=True, timeout=60)
      assert result.returncode == 0, (module, flag, result.stderr[-2000:])
      out = result.stdout
      assert out.startswith(f"usage: python -m videogen.{module} "), (module, out[:200])
      assert "\nflags:\n" in out
      assert all(f"--{name}" in out for name in _own_flags(module)), (module, out)
      assert ("--flagfile" in out) == (flag == "--helpfull"), (module, flag)
      imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                  if line.startswith("import time:")}
      assert "jax" not in imported, f"videogen.{module} {flag} imported jax"


def test_sample_and_evaluate_flag_choices_match_the_modules_that_own_them():
  # videogen/sample.py and evaluate.py spell these out so that --help need not import jax.
  def tuples(path):
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    return {node.targets[0].id: node.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
  sample = tuples("videogen/sample.py")
  from videogen.diffusion.samplers import CACHE_POLICIES, SAMPLERS
  from videogen.models.camera import PATHS
  for name, owned in (("SAMPLERS", SAMPLERS), ("CACHE_POLICIES", CACHE_POLICIES),
                      ("PATHS", PATHS)):
    assert set(ast.literal_eval(sample[name])) == set(owned), name
  from videogen.eval.report import METRICS
  assert ast.literal_eval(tuples("videogen/evaluate.py")["METRICS"]) == METRICS
