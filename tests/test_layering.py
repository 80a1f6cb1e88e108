"""Imports run one way (docs: the package map): no cycle among videogen's modules; nothing in
the model-side packages (models, diffusion, vae, text) reaches data, training, eval, sampling
or an entry point, even through other modules; sampling reaches no training, eval or entry
point, and neither data nor eval reaches it. Read from the source with `ast`, module-level and
function-level imports alike, so it takes well under a second and imports nothing. Likewise,
only videogen/workdir.py joins paths under a run directory."""
import ast
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent / "videogen"
LOWER = ("models", "diffusion", "vae", "text")
UPPER = ("data", "training", "eval")
SAMPLING = "sampling"  # above the model side, below the entry points; training's in-loop
# evaluation samples, data and eval do not


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
# videogen/X.py, and each benchmark under `python -m videogen.bench <what>` (videogen/bench/).
ENTRY_POINTS = {name for name, path in MODULES.items()
                if (name.count(".") == 1 or name.startswith("videogen.bench."))
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


def _chains_from(start: str) -> dict[str, list[str]]:
  """Every module `start` reaches through imports, with a shortest chain to it."""
  chains, frontier = {start: [start]}, [start]
  while frontier:
    reached = []
    for a in frontier:
      for b in sorted(GRAPH[a] - chains.keys()):
        chains[b] = chains[a] + [b]
        reached.append(b)
    frontier = reached
  del chains[start]
  return chains


def _reaches(layers: tuple[str, ...], forbidden) -> list[str]:
  """The import chains from a module in `layers` to a module `forbidden(name)` holds for."""
  return [" -> ".join(chain) for a in sorted(GRAPH) if _layer(a) in layers
          for b, chain in _chains_from(a).items() if forbidden(b)]


def test_no_model_side_module_reaches_data_training_eval_sampling_or_an_entry_point():
  """Not through a shared top-level module either: the model side loads alone."""
  assert _reaches(LOWER, lambda b: _layer(b) in (*UPPER, SAMPLING) or b in ENTRY_POINTS) == []


def test_sampling_sits_between_the_model_side_and_the_entry_points():
  assert _reaches((SAMPLING,), lambda b: _layer(b) in ("training", "eval")
                  or b in ENTRY_POINTS) == []
  assert _reaches(("data", "eval"), lambda b: _layer(b) == SAMPLING) == []


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
  assert GRAPH["videogen.cli"] <= {"videogen.config", "videogen.validate",
                                   "videogen.sampling.generator"}
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
                     "videogen.validate", "videogen.sampling.generator"}


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


def _workdir_layout() -> tuple[set[str], set[str]]:
  """(the names workdir.py gives paths in a run directory: its module-level strings; its
  functions that return such paths: every one annotated to return Paths except `path`, which
  turns any location, an export or an --output_dir, into one)."""
  names, functions = set(), set()
  for node in ast.parse(MODULES["videogen.workdir"].read_text()).body:
    if isinstance(node, ast.Assign):
      values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
      names |= {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value,
                                                                                         str)}
    elif isinstance(node, ast.FunctionDef) and node.name != "path" and node.returns and \
        "Path" in ast.unparse(node.returns):
      functions.add(node.name)
  return names, functions


def _scopes(tree: ast.Module) -> list[list[ast.AST]]:
  """The module's own statements, then each function, as the nodes each holds."""
  top = [node for statement in tree.body
         if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
         for node in ast.walk(statement)]
  return [top, *(list(ast.walk(f)) for f in ast.walk(tree)
                 if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)))]


def _workdir_joins(source: str) -> set[tuple[int, str]]:
  """(line, code) of each join in `source` that names a path under a run directory: a `/`,
  `os.path.join`, `joinpath` or `glob` onto a path a workdir.py function returned (or its
  `path` of something called workdir), directly or through a variable of the same function,
  or onto one of workdir.py's names (literal, or a module constant holding one)."""
  names, layout = _workdir_layout()
  tree = ast.parse(source)
  modules, functions = set(), {}  # what the module calls videogen.workdir and its functions
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == "videogen":
      modules |= {a.asname or a.name for a in node.names if a.name == "workdir"}
    elif isinstance(node, ast.ImportFrom) and node.module == "videogen.workdir":
      functions.update({a.asname or a.name: a.name for a in node.names})
    elif isinstance(node, ast.Import):
      modules |= {a.asname for a in node.names if a.name == "videogen.workdir" and a.asname}
  constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Constant) for t in node.targets
               if isinstance(t, ast.Name)}

  def literal(e) -> bool:
    value = constants.get(e.id) if isinstance(e, ast.Name) else getattr(e, "value", None)
    return isinstance(value, str) and value in names

  def workdir_function(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules:
      return f.attr
    return functions.get(f.id) if isinstance(f, ast.Name) else None

  found = set()
  for nodes in _scopes(tree):
    under = set()  # the function's variables that hold a path under a workdir

    def under_workdir(e) -> bool:
      if isinstance(e, ast.Name):
        return e.id in under
      if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Div):
        return under_workdir(e.left) or literal(e.right)
      if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and \
          e.func.attr in ("iterdir", "glob", "rglob"):
        return under_workdir(e.func.value)  # a listing of a folder under a workdir
      if isinstance(e, ast.Call):
        name = workdir_function(e)
        return name in layout or (name == "path" and bool(e.args) and
                                  "workdir" in ast.unparse(e.args[0]).lower())
      return False

    for _ in range(3):  # a variable bound from another one
      for node in nodes:
        bound = []
        if isinstance(node, ast.Assign) and under_workdir(node.value):
          bound = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value and under_workdir(node.value):
          bound = [node.target]
        elif isinstance(node, (ast.For, ast.comprehension)) and under_workdir(node.iter):
          bound = [node.target]
        elif isinstance(node, ast.withitem) and node.optional_vars and \
            under_workdir(node.context_expr):
          bound = [node.optional_vars]
        under.update(n.id for target in bound for n in ast.walk(target)
                     if isinstance(n, ast.Name))
    for node in nodes:
      if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        joins = under_workdir(node.left) or literal(node.right)
      elif isinstance(node, ast.Call) and ast.unparse(node.func) == "os.path.join":
        joins = bool(node.args) and (under_workdir(node.args[0]) or any(map(
            literal, node.args[1:])) or "workdir" in ast.unparse(node.args[0]).lower())
      elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        joins = node.func.attr in ("joinpath", "glob", "rglob") and under_workdir(
            node.func.value)
      else:
        continue
      if joins:
        found.add((node.lineno, ast.unparse(node)))
  return found


# Joins onto one of workdir.py's names that are not in a run directory, each with its reason.
NOT_A_RUN_DIRECTORY = {("videogen.formats.diffusers_dit", "'spiece.model'"):
                       "the tokenizer beside a T5 checkpoint being imported"}


def test_only_workdir_py_joins_paths_under_a_run_directory():
  """videogen/workdir.py names every path in a run directory (docs/run_directories.md);
  elsewhere a path under a workdir comes from one of its functions, whole."""
  joins = {(name, line, code) for name, path in MODULES.items() if name != "videogen.workdir"
           for line, code in _workdir_joins(path.read_text())
           if not any(name == module and text in code for module, text in NOT_A_RUN_DIRECTORY)}
  assert joins == set(), sorted(joins)


def test_the_workdir_join_check_sees_joins():
  """The check above finds the joins it is for, and passes what workdir.py hands out whole."""
  bad = '''
from videogen import workdir as workdir_lib
import os
VIDEOS = "videos"
def a(workdir, step):
  return workdir_lib.checkpoints(workdir) / str(step)
def b(workdir):
  root = workdir_lib.path(workdir)
  return os.path.join(workdir, "x"), root / "report.html"
def c(output_dir):
  folder = workdir_lib.path(output_dir) / VIDEOS
  return folder / "00.webm", manager.directory / "digests"
def d(workdir):
  for folder in workdir_lib.eval_dir(workdir).iterdir():
    yield sorted(folder.glob("*.webm"))
'''
  assert {code for _, code in _workdir_joins(bad)} == {
      "workdir_lib.checkpoints(workdir) / str(step)", "os.path.join(workdir, 'x')",
      "root / 'report.html'", "workdir_lib.path(output_dir) / VIDEOS", "folder / '00.webm'",
      "manager.directory / 'digests'", "folder.glob('*.webm')"}
  good = '''
from videogen import workdir as workdir_lib
def a(workdir, output, name, step):
  export = workdir_lib.path(output) / "model.safetensors"
  return workdir_lib.checkpoint_item(workdir, step, "ema"), workdir_lib.run_file(output, name)
'''
  assert _workdir_joins(good) == set()
