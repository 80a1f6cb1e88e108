"""Sampling from a trained model: `generator.Generator` (load a checkpoint, text → video) and
`control` (image-to-video, extension, keyframe interpolation, editing) on top of it.

Above models, diffusion, vae and text; below the entry points. It imports no training code,
so the `sample` CLI, the benchmarks, evaluation and the training loop's evaluation share it.
"""
