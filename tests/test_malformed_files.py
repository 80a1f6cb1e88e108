"""Files we did not write are data: each reader (I3D weights, an export's model.safetensors, a
LoRA adapter, manifests, torch files) refuses each malformed input with one line, which the
CLIs print as one `error:` line with exit 2, never a traceback; a pickle never runs."""
import json
import os
import struct

import numpy as np
import pytest

from conftest import one_line_error, run_cli, tiny_config
from videogen import checkpoints
from videogen.formats import diffusers_dit
from videogen.formats import weight_files as weights
from videogen.data import manifest
from videogen.formats import i3d as i3d_format

GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def _safetensors(header, declared: int | None = None, data: bytes = b"\0" * 8) -> bytes:
  raw = header if isinstance(header, bytes) else json.dumps(header).encode()
  return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


# The cases, plus offsets past the end and a truncated file.
MALFORMED = {
    "header_a_list": _safetensors([1, 2]),
    "header_a_string": _safetensors("x"),
    "missing_dtype": _safetensors({"a": {"shape": [2], "data_offsets": [0, 8]}}),
    "string_offsets": _safetensors({"a": {"dtype": "F32", "shape": [2],
                                          "data_offsets": ["0", "8"]}}),
    "length_2_40": _safetensors(GOOD, declared=2 ** 40),
    "length_2_63": _safetensors(GOOD, declared=2 ** 63),
    "nested_200k": _safetensors(b"[" * 200_000 + b"]" * 200_000),
    "offsets_past_the_end": _safetensors({"a": {"dtype": "F32", "shape": [200],
                                                "data_offsets": [0, 800]}}),
    "truncated": _safetensors(GOOD)[:-3],
}


def _one_line(error, path) -> str:
  message = str(error.value)
  assert "\n" not in message and str(path) in message, message
  return message


def _adapter_dir(folder, weights_bytes: bytes | None = None, meta=None, tensors=None):
  """An adapter folder: valid weights and adapter.json unless replaced."""
  folder.mkdir()
  if weights_bytes is None:
    weights.write_safetensors(str(folder / checkpoints.ADAPTER_WEIGHTS_FILE),
                              {"x/a": np.zeros((2, 1), np.float32)} if tensors is None
                              else tensors)
  else:
    (folder / checkpoints.ADAPTER_WEIGHTS_FILE).write_bytes(weights_bytes)
  meta = {"rank": 1, "alpha": 2.0, "base": {}} if meta is None else meta
  (folder / checkpoints.ADAPTER_META_FILE).write_bytes(meta if isinstance(meta, bytes) else
                                        json.dumps(meta).encode())
  return folder


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_safetensors_reader_refuses_it_in_one_line(tmp_path, case):
  """The package's reader, the strict fallback, I3D weights, an export's model.safetensors
  (as sampling and `export --format diffusers` read it) and a LoRA adapter: one ValueError
  line naming the file each time."""
  import jax
  path = tmp_path / "w.safetensors"
  path.write_bytes(MALFORMED[case])
  for read in (weights.read_safetensors, weights.read_safetensors_checked, i3d_format.load_i3d):
    with pytest.raises(ValueError, match="is not a valid safetensors file") as error:
      read(str(path))
    _one_line(error, path)
  export = tmp_path / "export"
  export.mkdir()
  (export / checkpoints.EXPORT_SAFETENSORS_FILE).write_bytes(MALFORMED[case])
  for read in (lambda: checkpoints.load_safetensors_params(
      str(export), {"x": jax.ShapeDtypeStruct((2,), "float32")}),
               lambda: diffusers_dit.stored_text_width(str(export))):  # export --format
    with pytest.raises(ValueError, match="is not a valid safetensors file") as error:
      read()
    _one_line(error, export / checkpoints.EXPORT_SAFETENSORS_FILE)
  adapter = _adapter_dir(tmp_path / "adapter", MALFORMED[case])
  with pytest.raises(ValueError, match="is not a valid safetensors file") as error:
    checkpoints.load_adapter(str(adapter))
  _one_line(error, adapter / checkpoints.ADAPTER_WEIGHTS_FILE)


def test_the_strict_reader_reads_what_the_package_reads(tmp_path):
  """bf16 included (the reason the fallback exists), keys and values alike."""
  import ml_dtypes
  tensors = {"bf16": np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16),
             "f16": np.ones(3, np.float16), "i64": np.arange(4), "flag": np.array([True, False]),
             "empty": np.zeros((0, 2), np.float32), "scalar": np.float32(3.5)}
  path = str(tmp_path / "t.safetensors")
  weights.write_safetensors(path, tensors, {"note": "x"})
  package, strict = weights.read_safetensors(path), weights.read_safetensors_checked(path)
  assert set(package) == set(strict) == set(tensors)
  for key, value in tensors.items():
    assert package[key].dtype == strict[key].dtype == value.dtype, key
    np.testing.assert_array_equal(package[key], value)
    np.testing.assert_array_equal(strict[key], value)


@pytest.mark.parametrize("meta,message", [
    ({"rank": 0, "alpha": 1.0}, r"rank=0 must be a whole number"),
    ({"rank": "4", "alpha": 1.0}, r"rank='4' must be a whole number"),
    ({"rank": 2.0, "alpha": 1.0}, r"rank=2.0 must be a whole number"),
    (b'{"rank": 1, "alpha": Infinity}', r"alpha=inf must be a finite number"),
    (b'{"rank": 1, "alpha": 1e400}', r"alpha=inf must be a finite number"),
    (b'{"rank": 1, "alpha": NaN}', r"alpha=nan must be a finite number"),
    (b"[" * 100_000 + b"]" * 100_000, r"nests 100000 levels deep"),
    ([1, 2], r"is a JSON list, not an object"),
    (b"\xff{}", r"is not valid JSON"),
])
def test_adapter_json_is_checked(tmp_path, meta, message):
  adapter = _adapter_dir(tmp_path / "adapter", meta=meta)
  with pytest.raises(ValueError, match=message) as error:
    checkpoints.load_adapter(str(adapter))
  _one_line(error, adapter / checkpoints.ADAPTER_META_FILE)


@pytest.mark.parametrize("tensors,message", [
    ({}, "holds no tensors"),
    ({"a": np.zeros(1, np.float32), "a/b": np.zeros(1, np.float32)},
     "holds both a tensor and a scope at a/b")])
def test_adapter_tensors_must_form_a_tree(tmp_path, tensors, message):
  adapter = _adapter_dir(tmp_path / "adapter", tensors=tensors)
  with pytest.raises(ValueError, match=message) as error:
    checkpoints.load_adapter(str(adapter))
  _one_line(error, adapter / checkpoints.ADAPTER_WEIGHTS_FILE)


def test_manifest_rows_must_be_bounded_objects(tmp_path):
  good = {"path": "a.mp4", "text": "a", "num_frames": 8, "height": 32, "width": 32, "fps": 8}
  lines = [json.dumps(good), "[1, 2]", '"a string"',
           json.dumps({**good, "num_frames": 1e30}), json.dumps({**good, "height": 1e6}),
           json.dumps(good).replace("8,", "1e400,", 1), json.dumps({**good, "fps": float("nan")}),
           json.dumps({**good, "width": True}).replace("true", "-1"),
           "[" * 100_000 + "]" * 100_000]
  path = tmp_path / "m.jsonl"
  path.write_text("\n".join(lines) + "\n")
  rows = manifest.read_rows(str(path))
  assert all(isinstance(row, dict) for row in rows)
  assert rows[1]["_bad"] == "line 2 is a JSON list, not an object"
  assert "nests 100000 levels deep" in rows[-1]["_bad"]
  with pytest.warns(UserWarning) as caught:
    clips, skipped = manifest.read_manifest(str(path))
  assert [c.num_frames for c in clips] == [8] and skipped == len(lines) - 1
  assert all("\n" not in str(w.message) for w in caught)
  assert "num_frames=1e+30 is outside (0, 1e+07]" in str(caught[2].message)


class _Payload:
  """Unpickled, this would create the file `marker`; weights_only=True never runs it."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return open, (self.marker, "w")


def _pickles(tmp_path) -> dict:
  import torch
  marker = str(tmp_path / "pickle_ran")
  paths = {}
  paths["pickle"] = tmp_path / "evil.pt"
  torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, paths["pickle"])
  paths["random_bytes"] = tmp_path / "random.pt"
  paths["random_bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
  paths["truncated"] = tmp_path / "truncated.pt"
  torch.save({"w": torch.zeros(64)}, paths["truncated"])
  paths["truncated"].write_bytes(paths["truncated"].read_bytes()[:300])
  paths["not_a_state_dict"] = tmp_path / "list.pt"
  torch.save([torch.zeros(2)], paths["not_a_state_dict"])
  return paths, marker


def test_torch_files_are_refused_in_one_line_and_never_run(tmp_path):
  pytest.importorskip("torch")
  paths, marker = _pickles(tmp_path)
  for name, path in paths.items():
    for read in (weights.read_torch, i3d_format.load_i3d):
      with pytest.raises(ValueError) as error:
        read(str(path))
      message = _one_line(error, path)
      if name == "pickle":
        assert "unsupported global io.open" in message, message
  assert not os.path.exists(marker)


def _zero_export(folder):
  """A loadable safetensors export of `configs/tiny.py:test` with zero params (no training)."""
  import jax
  from videogen.sampling.generator import Generator
  from videogen.models.text_to_video import param_shardings
  from videogen.parallel import mesh as mesh_lib
  config = tiny_config()
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:1])
  generator = Generator.with_params(config, str(folder), mesh, None)
  abstract, _ = param_shardings(generator.model, config, mesh,
                                mesh_lib.rules_from_config(config.mesh), None)
  checkpoints.export_safetensors(str(folder), jax.tree.map(
      lambda a: np.zeros(a.shape, a.dtype), abstract), config)
  return folder


def test_clis_print_one_error_line(tmp_path):
  """Through the CLIs (one process each): a pickle as `convert --from pytorch-i3d` and as
  `evaluate --i3d_weights`, a malformed export for `sample`, a bad adapter.json for
  `sample --lora`, a manifest row that is a list for `evaluate --videos`."""
  pytest.importorskip("torch")
  from videogen import video_io
  paths, marker = _pickles(tmp_path)
  rng = np.random.default_rng(0)
  rows = []
  for k in range(2):
    video_io.write_video(str(tmp_path / f"v{k}.mp4"),
                         rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), fps=4)
    rows.append({"path": f"v{k}.mp4", "text": "a red circle"})
  manifest.write_manifest(str(tmp_path / "videos.jsonl"), rows)
  export = _zero_export(tmp_path / "export")
  assert diffusers_dit.stored_text_width(str(export)) == tiny_config().model.text_dim
  bad_export = tmp_path / "bad_export"
  bad_export.mkdir()
  for name in (checkpoints.EXPORT_CONFIG_FILE, checkpoints.EXPORT_METADATA_FILE):
    (bad_export / name).write_bytes((export / name).read_bytes())
  (bad_export / checkpoints.EXPORT_SAFETENSORS_FILE).write_bytes(MALFORMED["nested_200k"])
  adapter = _adapter_dir(tmp_path / "adapter", meta={"rank": "4", "alpha": 1.0})
  (tmp_path / "rows.jsonl").write_text('["v0.mp4", "a red circle"]\n')
  runs = {
      "evaluate --videos": (("videogen.evaluate", "--videos", str(tmp_path / "rows.jsonl"),
                             "--metrics", "flicker"), "row 1 needs 'path' and 'text'"),
      "convert": (("videogen.convert", "--from", "pytorch-i3d", str(paths["pickle"]), "--to",
                   str(tmp_path / "i3d.safetensors")), "unsupported global io.open"),
      "evaluate": (("videogen.evaluate", "--videos", str(tmp_path / "videos.jsonl"),
                    "--reference", str(tmp_path / "videos.jsonl"), "--metrics", "fvd",
                    "--i3d_weights", str(paths["pickle"])), "unsupported global io.open"),
      "sample export": (("videogen.sample", "--checkpoint", str(bad_export), "--prompt", "a",
                         "--output", str(tmp_path / "a.mp4")), "is not a valid safetensors file"),
      "sample --lora": (("videogen.sample", "--checkpoint", str(export), "--lora", str(adapter),
                         "--prompt", "a", "--output", str(tmp_path / "b.mp4")),
                        "rank='4' must be a whole number"),
  }
  for name, (args, message) in runs.items():
    result = run_cli(*args)
    assert result.returncode == 2, (name, result.stderr)
    assert "Traceback" not in result.stderr and message in one_line_error(result), (
        name, result.stderr)
  assert not os.path.exists(marker)
