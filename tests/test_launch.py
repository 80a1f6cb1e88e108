"""Every launch script parses (`bash -n`) and, with `--dry_run`, prints the exact commands it
would run and runs none (gcloud, kubectl, srun and scontrol are not installed here, so a dry
run that ran one would fail)."""
import glob
import os
import subprocess

import pytest

from conftest import REPO

SCRIPTS = sorted(glob.glob(os.path.join(REPO, "launch", "**", "*.sh"), recursive=True)
                 + glob.glob(os.path.join(REPO, "launch", "**", "*.sbatch"), recursive=True))
DRY_RUNS = {
    "local_multiprocess.sh": (["2", "configs/tiny.py", "runs/mp", "--config.seed=1"],
                              ["JAX_PROCESS_ID=0", "JAX_PROCESS_ID=1", "--config.seed=1"]),
    "tpu/create.sh": (["vg", "us-east5-a", "v5p-128"],
                      ["gcloud compute tpus tpu-vm create vg --zone us-east5-a --accelerator-type v5p-128"]),
    "tpu/delete.sh": (["vg", "us-east5-a"], ["gcloud compute tpus tpu-vm delete vg"]),
    "tpu/install.sh": (["vg", "us-east5-a"], ["tpu-vm scp --recurse", "jax\\[tpu\\]"]),
    "tpu/logs.sh": (["vg", "us-east5-a"], ["--worker=0"]),
    "tpu/run.sh": (["vg", "us-east5-a", "configs/tiny.py", "gs://b/run", "--config.seed=1"],
                   ["--worker=all", "VIDEOGEN_DISTRIBUTED=1", "--workdir\\ gs://b/run",
                    "--config.seed=1"]),
    "slurm/train.sbatch": (["configs/tiny.py", "gs://b/run", "--config.seed=1"],
                           ["srun bash -c", "configs/tiny.py gs://b/run --config.seed=1"]),
    "gke/run.sh": (["vg", "img", "tpu-v5p-slice", "4x4x4", "2", "16", "4", "configs/tiny.py",
                    "gs://b/run", "--config.mesh.dcn_data=2"],
                   ["kind: JobSet", "replicas: 2", "parallelism: 16", "google.com/tpu: 4",
                    '"--workdir", "gs://b/run", "--compile_cache", "/tmp/jax_cache", '
                    '"--config.mesh.dcn_data=2"]', "+ kubectl apply -f"]),
}


SOURCED = "common.sh"  # the --dry_run switch every script sources


def test_every_script_has_a_dry_run_case():
  scripts = {os.path.relpath(s, os.path.join(REPO, "launch")) for s in SCRIPTS}
  assert scripts - {SOURCED} == set(DRY_RUNS)
  assert subprocess.run(["bash", "-n", os.path.join(REPO, "launch", SOURCED)]).returncode == 0


@pytest.mark.parametrize("script", sorted(DRY_RUNS))
def test_dry_run_prints_the_commands_and_runs_nothing(script):
  path = os.path.join(REPO, "launch", script)
  assert subprocess.run(["bash", "-n", path]).returncode == 0
  args, expected = DRY_RUNS[script]
  result = subprocess.run(["bash", path, *args, "--dry_run"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr
  commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
  assert commands, result.stdout
  for text in expected:
    assert text in result.stdout, (text, result.stdout)
  if script == "gke/run.sh":
    import yaml
    jobset = yaml.safe_load(result.stdout[:result.stdout.index("+ kubectl")])
    assert jobset["spec"]["replicatedJobs"][0]["replicas"] == 2
