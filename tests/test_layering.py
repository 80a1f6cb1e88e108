"""Imports run one way (docs: the package map): no cycle among videogen's modules, and nothing
in the model-side packages (models, diffusion, vae, text) imports data, training, eval or an
entry point. Read from the source with `ast`, module-level and function-level imports alike,
so it takes well under a second and imports nothing."""
import ast
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent / "videogen"
LOWER = ("models", "diffusion", "vae", "text")
UPPER = ("data", "training", "eval")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
ENTRY_POINTS = {name for name, path in MODULES.items() if name.count(".") == 1
                and re.search(r"^def main\(", path.read_text(), re.M)}


def _resolve(name: str) -> str | None:
  while name and name not in MODULES:
    name = name.rpartition(".")[0]
  return name or None


def _imports(name: str, path: pathlib.Path) -> set[str]:
  """Every videogen module `name` imports, at any depth of its body."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      submodules = [f"{base}.{alias.name}" for alias in node.names]
      targets = [t for t in submodules if t in MODULES] or [base]
    else:
      continue
    found |= {_resolve(t) for t in targets if t == "videogen" or t.startswith("videogen.")}
  return found - {None, name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> str:
  parts = name.split(".")
  return "entry point" if name in ENTRY_POINTS else parts[1] if len(parts) > 2 else ""


def test_no_model_side_module_imports_data_training_eval_or_an_entry_point():
  upward = {(a, b) for a, edges in GRAPH.items() for b in edges
            if _layer(a) in LOWER and (_layer(b) in UPPER or b in ENTRY_POINTS)}
  assert upward == set(), sorted(upward)


def test_no_import_cycle():
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in GRAPH[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while not component or v not in component:
        component.add(stack.pop())
      on_stack.difference_update(component)
      if len(component) > 1:
        cycles.append(sorted(component))

  for v in GRAPH:
    if v not in index:
      visit(v)
  assert cycles == [], cycles


def test_config_is_a_leaf():
  assert GRAPH["videogen.config"] == set()
  assert GRAPH["videogen.cli"] <= {"videogen.config", "videogen.validate", "videogen.generate"}
  assert os.path.isfile(MODULES["videogen.validate"])


def test_the_data_pipeline_loads_no_flax():
  """Grain workers import data/pipeline.py: numpy code only, no model modules."""
  seen, todo = set(), ["videogen.data.pipeline"]
  while todo:
    name = todo.pop()
    if name not in seen:
      seen.add(name)
      todo.extend(GRAPH[name])
  with_flax = sorted(name for name in seen
                     if re.search(r"^\s*(import|from) flax", MODULES[name].read_text(), re.M))
  assert with_flax == [], with_flax


# Imports a library module may keep inside a function, each for the reason its comment gives:
# optional or heavy dependencies, and the CLI helper's path past --help.
DELIBERATELY_LATE = {"yaml", "tensorflow_datasets", "torch", "tensorboardX",
                     "tensorboardX.proto.summary_pb2",
                     "jax.experimental.pallas.ops.tpu.splash_attention",
                     "videogen.validate", "videogen.generate"}


def test_library_modules_import_at_the_top():
  """Function-body imports hide the graph: outside the entry points (whose `main` keeps
  `--help` before jax), only the deliberate ones above."""
  late = set()
  for name, path in MODULES.items():
    if name in ENTRY_POINTS:
      continue
    for function in ast.walk(ast.parse(path.read_text())):
      if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(function):
          if isinstance(node, ast.Import):
            late |= {(name, alias.name) for alias in node.names}
          elif isinstance(node, ast.ImportFrom):
            late.add((name, node.module))
  assert {(name, module) for name, module in late if module not in DELIBERATELY_LATE} == set()
