"""The documentation site: antsibull-docs renders every module and role, the guides are in it, a broken
link fails the build, and it builds on a machine without libvirt, QEMU or a package manager."""

import ast
import atexit
import os
import pathlib
import re
import shutil
import tempfile

import pytest

from helpers import EARLY, ROOT, run_bounded, without_libvirt


def build(out, guides=None):
    cmd = ["bash", os.path.join(ROOT, "scripts", "docs.sh"), "--out", str(out)]
    if guides:
        cmd += ["--guides", str(guides)]
    return run_bounded(cmd, 900, cwd=ROOT)


# the site is built once, early, in the background, into a directory of the run's own, where libvirt, QEMU
# and the package managers are hidden (scripts/docs.sh needs Python packages only)
SITE = tempfile.mkdtemp(prefix="nltest-site-")
atexit.register(shutil.rmtree, SITE, True)
DOCS = without_libvirt(["bash", os.path.join(ROOT, "scripts", "docs.sh"), "--out", SITE])


@pytest.mark.early("docs", DOCS)
def test_the_site_has_every_module_role_and_guide():
    run = EARLY.result("docs", DOCS)
    assert run.returncode == 0, run.stdout[-4000:]
    html = pathlib.Path(SITE) / "html"
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))
    roles = sorted(os.listdir(os.path.join(ROOT, "roles")))
    assert len(modules) >= 19 and len(roles) >= 9
    missing = [page for page in ["reference/%s_module.html" % m for m in modules] + ["reference/%s_role.html" % r for r in roles]
               if not (html / page).is_file()]
    assert missing == []
    guides = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
    assert [g for g in guides if not (html / "guides" / (g + ".html")).is_file()] == []
    # a module page carries its options and return values, a role page its variables
    page = (html / "reference" / "guest_config_module.html").read_text()
    assert "units_started" in page and "changes" in page
    assert "guest_hugepages_per_node" in (html / "reference" / "guest_hugepages_role.html").read_text()
    # and the guides link to each other
    assert 'href="troubleshooting.html"' in (html / "guides" / "quickstart.html").read_text()


def test_a_broken_link_fails_the_build(tmp_path):
    guides = tmp_path / "guides"
    shutil.copytree(os.path.join(ROOT, "docs"), str(guides), ignore=shutil.ignore_patterns("site"))
    with open(str(guides / "quickstart.md"), "a") as handle:
        handle.write("\nSee [the page that is not there](no-such-guide.md).\n")
    run = build(tmp_path / "site", guides)
    assert run.returncode != 0
    assert "no-such-guide" in run.stdout, run.stdout[-4000:]


def test_every_test_that_docs_testing_names_exists():
    """docs/testing.md maps each README claim to tests: every one it names is a test function of its file."""
    with open(os.path.join(ROOT, "docs", "testing.md")) as handle:
        text = handle.read()
    table = text.split("## What each claim of the README rests on", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| claim")]
    assert len(rows) >= 25
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", table)
    assert all(re.search(r"`tests/[\w/]+\.py::test_\w+`", row) for row in rows), "a claim with no test"
    missing = []
    for path, name in set(named):
        full = os.path.join(ROOT, path)
        tree = ast.parse(open(full).read()) if os.path.exists(full) else None
        if tree is None or name not in [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]:
            missing.append("%s::%s" % (path, name))
    assert missing == []
