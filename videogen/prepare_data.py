"""Scan video files into a manifest for `data.source=videos`.

    python -m videogen.prepare_data --input DIR_OR_MANIFEST --output clips.csv \\
        [--scorer my_module:score] [--motion_frames 8] [--max_pixels N] \\
        [--require_captions] [--tfds_dir DATA_DIR]

Writes one row per readable file: path, text (from a sidecar `NAME.txt` or the input
manifest), num_frames, height, width, fps, aspect_ratio, duration, motion, and whatever the
optional scorer returns (e.g. aesthetic, watermark). A folder is data whatever it holds:
every file that cannot be read (not a video, corrupt, truncated, empty, frames above
`--max_pixels` by its header, a name that is not UTF-8, a directory called x.mp4) is skipped
with a warning line and counted by reason in the summary; a caption that is not UTF-8 is
decoded with U+FFFD and counted. Clips without a caption are counted with a warning
(`--require_captions`: an error, and no manifest is written).
"""
import collections
import sys

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_INPUT = flags.DEFINE_string("input", None, "A folder of videos or a manifest (.csv/.jsonl).")
_OUTPUT = flags.DEFINE_string("output", None, "Manifest to write (.csv or .jsonl).")
_SCORER = flags.DEFINE_string("scorer", "", "module:function adding score columns.")
_MOTION_FRAMES = flags.DEFINE_integer("motion_frames", 8, "Frames sampled for the motion score.")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels", 4096 * 4096, "Skip files whose frames (height × width, read from the "
    "container header before decoding) exceed this.", lower_bound=1)
_REQUIRE_CAPTIONS = flags.DEFINE_boolean(
    "require_captions", False, "Exit with an error (writing nothing) if a readable clip has no "
    "caption; without it such clips are counted and warned about.")
_TFDS_DIR = flags.DEFINE_string("tfds_dir", "", "Also build the TFDS dataset `video_manifest` "
                                "(ArrayRecord) from the manifest in this data_dir.")
flags.mark_flags_as_required(["input", "output"])

# Warning lines for the first skipped files, then every 1000th: never a flood.
_WARN_FIRST, _WARN_EVERY = 50, 1000


def _counts(counter: collections.Counter) -> str:
  return ", ".join(f"{reason}={n}" for reason, n in sorted(counter.items()))


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen import video_io
  from videogen.data import manifest, prepare
  try:
    scorer = prepare.load_scorer(_SCORER.value) if _SCORER.value else None
    inputs = prepare.find_inputs(_INPUT.value)
  except (FileNotFoundError, ValueError, OSError) as e:
    exit_with_error(str(e))
  rows, reasons = [], collections.Counter()

  def skip(path, reason, message):
    reasons[reason] += 1
    total = sum(reasons.values())
    if total <= _WARN_FIRST or total % _WARN_EVERY == 0:
      print(f"warning: skipped ({reason}): {message}", file=sys.stderr)

  for path, reason in inputs.skipped:
    shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
    skip(path, reason, shown if reason != "name_not_utf8" else f"{shown}: name is not UTF-8")
  for path, text in inputs.pairs:
    try:
      rows.append(prepare.describe(path, text, _MOTION_FRAMES.value, scorer, _MAX_PIXELS.value))
    except video_io.VideoReadError as e:
      skip(path, e.reason, str(e))
  uncaptioned = [row["path"] for row in rows if not row["text"]]
  if uncaptioned and _REQUIRE_CAPTIONS.value:
    exit_with_error(f"--require_captions: {len(uncaptioned)} of {len(rows)} readable clips have "
                    f"no caption (a NAME.txt beside NAME.mp4, or the input manifest's text), "
                    f"e.g. {uncaptioned[0]}; nothing written")
  manifest.write_manifest(_OUTPUT.value, rows)
  skipped = sum(reasons.values())
  summary = f"{_OUTPUT.value}: {len(rows)} clips, {skipped} unreadable files skipped"
  print(summary + (f" ({_counts(reasons)})" if skipped else ""))
  notes = {**inputs.notes, "no_caption": len(uncaptioned)}
  notes = collections.Counter({k: v for k, v in notes.items() if v})
  if notes:
    print(f"captions and folders: {_counts(notes)}")
  if uncaptioned:
    print(f"warning: {len(uncaptioned)} of {len(rows)} clips have no caption and train with an "
          f"empty one (add NAME.txt beside each video; --require_captions makes this an "
          f"error)", file=sys.stderr)
  if _TFDS_DIR.value:
    from videogen.data import tfds_source
    count = tfds_source.build_from_manifest(_OUTPUT.value, _TFDS_DIR.value)
    print(f"{_TFDS_DIR.value}: TFDS {tfds_source.BUILDER_NAME} with {count} examples")


if __name__ == "__main__":
  main(sys.argv)
