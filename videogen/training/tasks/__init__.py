"""What `videogen.train` trains, chosen by `config.task`: the few pieces the loop needs.

`dit`: the text-to-video denoiser (tasks/dit.py). `vae`: the video autoencoder (tasks/vae.py).
"""
import ml_collections

from videogen.training.tasks.base import Task
from videogen.training.tasks.dit import dit_task
from videogen.training.tasks.vae import vae_task

TASKS = ("dit", "vae")  # `task`: what `build_task` builds


def build_task(config: ml_collections.ConfigDict, mesh, rules, workdir: str | None = None
               ) -> Task:
  """`workdir` holds run-local state the task may create (a trained tokenizer)."""
  if config.task == "vae":
    return vae_task(config)
  return dit_task(config, mesh, rules, workdir)
