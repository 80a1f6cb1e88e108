# Sourced by every launch script. `--dry_run`, anywhere among the arguments, prints each
# command exactly as it would run (shell-quoted, after "+ ") and runs nothing.
# After sourcing: `set -- "${ARGS[@]}"` leaves the other arguments in place.
DRY_RUN=0
ARGS=()
for arg in "$@"; do
  if [[ $arg == --dry_run ]]; then DRY_RUN=1; else ARGS+=("$arg"); fi
done

run() {
  # One write per line: processes started in the background print whole lines.
  local line
  line=$(printf ' %q' "$@")
  printf '+%s\n' "$line"
  if [[ $DRY_RUN == 0 ]]; then "$@"; fi
}
