"""A run's LoRA adapters alone (`python -m videogen.export --adapter_only`): `adapter.safetensors`
+ `adapter.json`, for any copy of the base model. The files' layout and `load_adapter` live in
`videogen/checkpoints.py`.
"""
from videogen import checkpoints
from videogen.cli import load_generator_or_exit
from videogen.models import lora
from videogen.models.text_to_video import spec_from_config


def export_lora_adapter(workdir: str, output: str) -> None:
  """The LoRA adapters of the EMA params of `workdir`'s latest checkpoint, alone."""
  generator = load_generator_or_exit(workdir)
  _, adapter = lora.split_adapter(generator.params)
  checkpoints.save_adapter(output, adapter,
                           lora.adapter_meta(spec_from_config(generator.config.model)))
