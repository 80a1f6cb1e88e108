"""Scan video files into a manifest for `data.source=videos`.

    python -m videogen.prepare_data --input DIR_OR_MANIFEST --output clips.csv \\
        [--scorer my_module:score] [--motion_frames 8] [--tfds_dir DATA_DIR]

Writes one row per readable file: path, text (from a sidecar `NAME.txt` or the input
manifest), num_frames, height, width, fps, aspect_ratio, duration, motion, and whatever the
optional scorer returns (e.g. aesthetic, watermark). Unreadable files are skipped with one
warning line each and counted in the summary.
"""
import sys
import warnings

from absl import flags

from videogen.config import exit_with_error, parse_flags_or_exit

_INPUT = flags.DEFINE_string("input", None, "A folder of videos or a manifest (.csv/.jsonl).")
_OUTPUT = flags.DEFINE_string("output", None, "Manifest to write (.csv or .jsonl).")
_SCORER = flags.DEFINE_string("scorer", "", "module:function adding score columns.")
_MOTION_FRAMES = flags.DEFINE_integer("motion_frames", 8, "Frames sampled for the motion score.")
_TFDS_DIR = flags.DEFINE_string("tfds_dir", "", "Also build the TFDS dataset `video_manifest` "
                                "(ArrayRecord) from the manifest in this data_dir.")
flags.mark_flags_as_required(["input", "output"])


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen import video_io
  from videogen.data import manifest, prepare
  try:
    scorer = prepare.load_scorer(_SCORER.value) if _SCORER.value else None
    inputs = prepare.find_inputs(_INPUT.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e))
  rows, skipped = [], 0
  for path, text in inputs:
    try:
      rows.append(prepare.describe(path, text, _MOTION_FRAMES.value, scorer))
    except video_io.VideoReadError as e:
      skipped += 1
      warnings.warn(f"skipped: {e}")
  manifest.write_manifest(_OUTPUT.value, rows)
  print(f"{_OUTPUT.value}: {len(rows)} clips, {skipped} unreadable files skipped")
  if _TFDS_DIR.value:
    from videogen.data import tfds_source
    count = tfds_source.build_from_manifest(_OUTPUT.value, _TFDS_DIR.value)
    print(f"{_TFDS_DIR.value}: TFDS {tfds_source.BUILDER_NAME} with {count} examples")


if __name__ == "__main__":
  main(sys.argv)
