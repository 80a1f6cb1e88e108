"""The benchmarks, one entry point: `python -m videogen.bench <what> [--flag=value ...]`.

    python -m videogen.bench [step] [--configs tiny,dit_100m]  # the train step (the default)
    python -m videogen.bench vae [--vs-pytorch]                # the VAE (against diffusers')
    python -m videogen.bench attention                         # attention backends side by side
    python -m videogen.bench data                              # the input pipeline vs the step
    python -m videogen.bench sample --workdir DIR              # samplers, step counts, caches
    python -m videogen.bench vs-pytorch-dit [--compile]        # the DiT step vs diffusers'

`python -m videogen.bench <what> --help` lists that benchmark's flags. Each benchmark runs as
the main module, so only its own flags are defined, and --help answers before jax loads.
"""
import runpy
import sys

from videogen.cli import exit_with_error

# <what> → the module under videogen/bench/ that runs it.
BENCHMARKS = {"step": "step", "vae": "vae", "attention": "attention", "data": "data",
              "sample": "sample", "vs-pytorch-dit": "vs_pytorch_dit"}


def main(argv: list[str]) -> None:
  named = len(argv) > 1 and not argv[1].startswith("-")
  what = argv[1] if named else "step"
  if what not in BENCHMARKS:
    exit_with_error(f"unknown benchmark {what!r}: expected one of {', '.join(BENCHMARKS)}")
  sys.argv = [argv[0], *argv[2 if named else 1:]]
  runpy.run_module(f"videogen.bench.{BENCHMARKS[what]}", run_name="__main__", alter_sys=True,
                   init_globals={"COMMAND": f"python -m videogen.bench {what}"})


if __name__ == "__main__":
  main(sys.argv)
