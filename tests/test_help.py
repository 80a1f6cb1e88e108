"""Every entry point (`python -m videogen.X` for each videogen/X.py with a `main`, and
`python -m videogen.bench <what>` for each benchmark) answers `--help`, `-h` and `--helpfull`
with a usage line and its flags, exit 0, before jax loads."""
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
# `python -m videogen.bench <what>` → videogen/bench/<module>.py, read from the dispatcher.
BENCHMARKS = next(ast.literal_eval(node.value) for node in ast.parse(
    open(os.path.join(REPO, "videogen", "bench", "__main__.py")).read()).body
    if isinstance(node, ast.Assign) and node.targets[0].id == "BENCHMARKS")
# (argv after `-m`, the command its usage line names, its source file)
COMMANDS = ([([f"videogen.{m}"], f"python -m videogen.{m}", f"videogen/{m}.py")
             for m in ENTRY_POINTS]
            + [(["videogen.bench", what], f"python -m videogen.bench {what}",
                f"videogen/bench/{module}.py") for what, module in BENCHMARKS.items()]
            + [(["videogen.bench"], "python -m videogen.bench step", "videogen/bench/step.py")])


def _own_flags(path: str) -> list[str]:
  source = open(os.path.join(REPO, path)).read()
  return re.findall(r"(?:DEFINE_\w+|DEFINE_config_file)\(\s*\"([\w-]+)\"", source)


def test_every_benchmark_is_a_bench_command():
  assert set(BENCHMARKS) == {"step", "vae", "attention", "data", "sample", "vs-pytorch-dit"}
  with_main = {os.path.basename(path)[:-3]
               for path in glob.glob(os.path.join(REPO, "videogen", "bench", "*.py"))
               if re.search(r"^def main\(", open(path).read(), re.M)}
  assert with_main - {"__main__"} == set(BENCHMARKS.values())


def test_every_entry_point_answers_help_quickly_and_before_jax():
  assert {"train", "sample", "export", "evaluate", "convert", "prepare_data",
          "encode_text", "aot", "model_info", "report"} <= set(ENTRY_POINTS)
  for args, command, source in COMMANDS:
    for flag in ("--help", "-h", "--helpfull") if args[0] in ("videogen.train",
                                                              "videogen.sample") else ("--help",):
      result = subprocess.run([sys.executable, "-X", "importtime", "-m", *args, flag],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
      assert result.returncode == 0, (args, flag, result.stderr[-2000:])
      out = result.stdout
      assert out.startswith(f"usage: {command} "), (args, out[:200])
      assert "\nflags:\n" in out
      assert all(f"--{name}" in out for name in _own_flags(source)), (args, out)
      assert ("--flagfile" in out) == (flag == "--helpfull"), (args, flag)
      imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                  if line.startswith("import time:")}
      assert "jax" not in imported, f"{' '.join(args)} {flag} imported jax"


def test_an_unknown_benchmark_is_one_error_line():
  result = subprocess.run([sys.executable, "-m", "videogen.bench", "vae_tiny", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith("error: unknown benchmark 'vae_tiny': expected one of step,")


def test_sample_and_evaluate_flag_choices_match_the_modules_that_own_them():
  # videogen/sample.py and evaluate.py spell these out so that --help need not import jax.
  def tuples(path):
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    return {node.targets[0].id: node.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
  sample = tuples("videogen/sample.py")
  from videogen.diffusion.feature_cache import CACHE_POLICIES
  from videogen.diffusion.samplers import SAMPLERS
  from videogen.models.camera import PATHS
  for name, owned in (("SAMPLERS", SAMPLERS), ("CACHE_POLICIES", CACHE_POLICIES),
                      ("PATHS", PATHS)):
    assert set(ast.literal_eval(sample[name])) == set(owned), name
  from videogen.eval.report import METRICS
  assert ast.literal_eval(tuples("videogen/evaluate.py")["METRICS"]) == METRICS
