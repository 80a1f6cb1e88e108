"""The few pieces of a task the shared training loop needs."""
import dataclasses
from typing import Any, Callable

import jax
import optax


@dataclasses.dataclass
class Task:
  init_params: Callable[[jax.Array], Any]       # key → logically boxed params
  tx: optax.GradientTransformation
  build_step: Callable                          # (state_shardings, batch_sharding, rules) → step
  evaluate: Callable | None = None              # state → {metric: float}, at each checkpoint
  metadata: Callable | None = None              # state → JSON saved with each checkpoint
  text_features: Callable | None = None         # captions → batch arrays (the data pipeline)
  init_compiler_options: dict | None = None     # XLA options for compiling the one-off init
