"""README.md and docs/*.md name only commands that run and links that resolve.

Every `python -m videogen.X` they mention must be an entry point that tests/test_help.py
already runs with `--help` (exit 0, a usage line, no jax); a documented module outside that
list is run with `--help` here. `python -m videogen.bench <what>` must name one of the
benchmarks (test_help.BENCHMARKS, each run with `--help` there). Every relative link (and `#anchor`) must point to a file (and a
heading) in the repository, every page under docs/ is linked from the README, and no page
refers to the project's issue tracker instead of stating the fact."""
import glob
import os
import re
import subprocess
import sys

import test_help
from conftest import REPO

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO)
                               for p in glob.glob(os.path.join(REPO, "docs", "*.md")))

_MODULE = re.compile(r"python -m (videogen(?:\.\w+)+)(?: ([a-z][\w-]*))?")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(page: str) -> str:
  """The page without its fenced code blocks (where `#` starts a comment, not a heading)."""
  text = open(os.path.join(REPO, page)).read()
  return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _anchors(page: str) -> set[str]:
  # GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens.
  return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
          for title in re.findall(r"^#+ (.+)$", _prose(page), re.M)}


def _module_file(module: str) -> str | None:
  base = os.path.join(REPO, *module.split("."))
  for candidate in (base + ".py", os.path.join(base, "__main__.py")):
    if os.path.isfile(candidate):
      return candidate
  return None


def test_every_documented_command_exists_and_answers_help():
  documented: dict[str, set[str]] = {}
  benchmarks: dict[str, set[str]] = {}  # python -m videogen.bench <what>
  for page in PAGES:
    for module, word in _MODULE.findall(open(os.path.join(REPO, page)).read()):
      documented.setdefault(module, set()).add(page)
      if module == "videogen.bench" and word:
        benchmarks.setdefault(word, set()).add(page)
  assert {"videogen.train", "videogen.sample", "videogen.evaluate"} <= set(documented)
  missing = {m: sorted(pages) for m, pages in documented.items() if _module_file(m) is None}
  missing |= {f"videogen.bench {w}": sorted(pages) for w, pages in benchmarks.items()
              if w not in test_help.BENCHMARKS}
  assert not missing, f"documented commands with no module: {missing}"
  # test_help.py runs these with --help; run only the others here, once each.
  checked = {f"videogen.{name}" for name in test_help.ENTRY_POINTS} | {"videogen.bench"}
  for module in sorted(set(documented) - checked):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (module, sorted(documented[module]), result.stderr[-2000:])
    assert result.stdout.startswith(f"usage: python -m {module}"), (module, result.stdout[:200])


def test_every_relative_link_resolves():
  broken = []
  for page in PAGES:
    for target in _LINK.findall(_prose(page)):
      if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        continue
      path, _, anchor = target.partition("#")
      linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      if not os.path.exists(os.path.join(REPO, linked)):
        broken.append((page, target))
      elif anchor and linked.endswith(".md") and anchor not in _anchors(linked):
        broken.append((page, target))
  assert not broken, f"links to no file or heading: {broken}"


def test_readme_links_every_docs_page():
  readme = open(os.path.join(REPO, "README.md")).read()
  unlinked = [page for page in PAGES[1:] if f"]({page})" not in readme]
  assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_no_page_refers_to_the_issue_tracker():
  mentions = [(page, line.strip()) for page in PAGES
              for line in open(os.path.join(REPO, page)) if re.search(r"\bissues?\b", line, re.I)]
  assert not mentions, mentions
