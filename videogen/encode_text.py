"""Pre-compute frozen text-encoder outputs, so training reads them instead of running T5.

    python -m videogen.encode_text --config configs/x.py --workdir RUN --output DIR \\
        [--captions FILE | --num_clips N]
    python -m videogen.train --config configs/x.py --workdir RUN \\
        --config.text.embeddings_path=DIR

Captions come from `--captions` (a `.txt` with one caption per line, or a `.csv` / `.jsonl`
with a `text` column, the Open-Sora manifest style) or, by default, from the config's data
source (its first `--num_clips` clips, after recaptioning). `--workdir` is the training run
the cache is for: a tokenizer trained in-process is created (or read) there. The cache is
keyed by caption and fingerprinted with the tokenizer and encoder; training refuses a cache
written for another text setup.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config (its text section).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run the cache is for.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (must not exist).")
_CAPTIONS = flags.DEFINE_string("captions", None, "Caption file (.txt, .csv or .jsonl).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 10_000,
                                  "Without --captions: clips of the data source to read.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Captions per encoder call.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "float16"], "Stored precision.")
flags.mark_flags_as_required(["config", "workdir", "output"])


def read_captions(path: str) -> list[str]:
  """Captions from a text, CSV or JSONL file (CSV/JSONL: the `text` column)."""
  from videogen.data.manifest import read_rows
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--captions {path!r} does not exist")
  if path.endswith(".txt"):
    with open(path) as f:
      return [line.rstrip("\n") for line in f if line.strip()]
  rows = read_rows(path)
  if any("text" not in row for row in rows):
    raise ValueError(f"--captions {path!r}: every row needs a 'text' column")
  return [row["text"] for row in rows]


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv)
  config = _CONFIG.value
  if config.text.encoder != "t5":
    exit_with_error("only a frozen encoder can be cached: set text.encoder='t5'")
  if os.path.exists(_OUTPUT.value):
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  from videogen.data import pipeline
  from videogen.data.recaption import RecaptionError
  from videogen.parallel import mesh as mesh_lib
  from videogen.text import embedding_cache
  from videogen.data.synthetic import VOCABULARY
  from videogen.text.conditioning import TOKENIZER_TRAINING_CAPTIONS, TextConditioning
  try:
    captions = (read_captions(_CAPTIONS.value) if _CAPTIONS.value
                else pipeline.source_captions(config, _NUM_CLIPS.value))
    mesh = mesh_lib.create_mesh(config.mesh)
    conditioning = TextConditioning.create(
        config, _WORKDIR.value, mesh, mesh_lib.rules_from_config(config.mesh),
        vocabulary=VOCABULARY,
        training_captions=lambda: pipeline.source_captions(config, TOKENIZER_TRAINING_CAPTIONS))
    count = embedding_cache.write_cache(conditioning, captions, _OUTPUT.value, _BATCH.value,
                                        dtype=_DTYPE.value)
  except (FileNotFoundError, RecaptionError, ValueError) as e:
    exit_with_error(str(e))
  print(f"{_OUTPUT.value}: {count} distinct captions of {len(captions)}")


if __name__ == "__main__":
  main(sys.argv)
