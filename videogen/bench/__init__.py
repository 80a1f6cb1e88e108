"""The benchmarks, one command each under `python -m videogen.bench <what>` (see __main__.py):
the train step, the VAE, attention backends, the data pipeline, the samplers, and the DiT step
against PyTorch. `timing.py` holds the timing loop and the measured matmul peak they share."""
