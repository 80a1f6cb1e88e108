"""What every entry point shares: flag parsing, `--help`, and the one-line error exit.

`parse_flags_or_exit` parses absl flags, loads and validates `--config` (videogen/validate.py),
and turns any problem into one `error:` line on stderr with exit code 2.
"""
import os
import re
import sys

import ml_collections
from absl import flags

from videogen.config import ConfigError, load_config_file


def _override_keys(argv: list[str], flag_name: str) -> list[str]:
  prefix = f"--{flag_name}."
  return [a[len(prefix):].split("=", 1)[0] for a in argv if a.startswith(prefix)]


def missing_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  """The first part of the dotted key `dotted` that `config` lacks (None: it has it)."""
  node = config
  for i, part in enumerate(dotted.split(".")):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return ".".join(dotted.split(".")[:i + 1])
    node = node[part]
  return None


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of `--name=V` or `--name V` in argv, if present."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


class _HelpFlag(flags.BooleanFlag):
  """`--help`/`-h`/`--helpshort`: the command's usage and own flags; `--helpfull`: every
  flag. Printed on stdout, exit code 0. Parsed by absl in order, so `--prompt -h` is a prompt."""

  def __init__(self, name: str, short_name: str | None, full: bool):
    super().__init__(name, False, "Show every flag, including library ones." if full else
                     "Show this help.", short_name=short_name)
    self.full = full

  def parse(self, argument):
    if self._parse(argument):
      main = sys.modules["__main__"]
      spec = getattr(main, "__spec__", None)
      # A module run by a dispatcher (videogen/bench/__main__.py) is told its command.
      command = getattr(main, "COMMAND", None) or (
          f"python -m {spec.name}" if spec else os.path.basename(sys.argv[0]))
      print(f"usage: {command} [--flag=value ...]\n\n{(main.__doc__ or '').strip()}\n")
      print("flags:")
      print(flags.FLAGS.get_help() if self.full else flags.FLAGS.main_module_help())
      sys.exit(0)


def define_help_flags() -> None:
  """`--help`, `-h`, `--helpshort`, `--helpfull` (absl defines them only under `app.run`)."""
  for name, short_name, full in (("help", "h", False), ("helpshort", None, False),
                                 ("helpfull", None, True)):
    if name not in flags.FLAGS:
      flags.DEFINE_flag(_HelpFlag(name, short_name, full))


def parse_flags_or_exit(argv: list[str], config_flag: str | None = "config") -> list[str]:
  """Parses absl flags; any problem becomes one `error:` line on stderr and exit code 2.
  `--help`/`-h`/`--helpfull` print usage and exit 0. Returns the positional arguments
  (program name first)."""
  define_help_flags()
  if config_flag:
    path = _flag_value(argv, config_flag)
    if path is not None and not os.path.isfile(path.split(":", 1)[0]):
      exit_with_error(f"--{config_flag}: config file {path.split(':', 1)[0]!r} does not exist")
  try:
    positional = flags.FLAGS(argv)
    if config_flag and flags.FLAGS[config_flag].present:
      # Deliberately here: validation asks the models, data, … (jax), and `--help` has
      # already answered above without loading them.
      from videogen.validate import validate
      validate(flags.FLAGS[config_flag].value)
  except AttributeError:
    # ml_collections reports an unknown override key as a bare AttributeError; name it.
    path = _flag_value(argv, config_flag)
    default = None if path is None else load_config_file(path)
    bad = next((k for k in _override_keys(argv, config_flag)
                if default is not None and missing_key(default, k)), None)
    exit_with_error(f"unknown config key {config_flag}.{bad}" if bad
                    else "invalid config override")
  except flags.Error as e:
    message = str(e).strip()
    if "Traceback" in message:  # an exception inside get_config(): keep what it said
      message = f"{message.split(': ', 1)[0]}: {message.splitlines()[-1].strip()}"
    exit_with_error(re.sub(r"\s+", " ", message))
  except ConfigError as e:
    exit_with_error(f"invalid config: {e}")
  return positional


def load_generator_or_exit(workdir: str | None, checkpoint: str | None = None,
                           lora: str | None = None):
  """`sampling.generator.load_generator`, or one `error:` line and exit 2 (no checkpoint,
  tokenizer or T5; a bad adapter; both or neither of workdir and checkpoint)."""
  from videogen.sampling.generator import load_generator  # jax: only once the flags are parsed
  try:
    return load_generator(workdir, checkpoint, lora)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e))


def exit_with_error(message: str) -> None:
  """The CLIs' single failure path: one `error:` line on stderr, exit code 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
