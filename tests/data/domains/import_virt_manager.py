"""Copy the domain XML of virt-manager's test suite into virt-manager/ (one document per file) and
record where each came from in SOURCES.json. Run once, by hand, with a clone of virt-manager:

    python3 tests/data/domains/import_virt_manager.py /path/to/virt-manager [commit]

virt-manager is GPL-2.0-or-later (its COPYING); these files are its test data, unchanged but for
the split of a file that holds more than one <domain> (virt-install's install and boot phases)."""

import os
import re
import subprocess
import sys

import sources as sources_file  # noqa: E402  (beside this script)

HERE = os.path.dirname(os.path.abspath(__file__))
DIRS = ("tests/data/cli/compare", "tests/data/xmlparse")


def main(repo, commit="HEAD"):
    git = ["git", "-C", repo]
    commit = subprocess.check_output(git + ["rev-parse", commit], universal_newlines=True).strip()
    out_dir = os.path.join(HERE, "virt-manager")
    os.makedirs(out_dir, exist_ok=True)
    sources = {}
    names = subprocess.check_output(git + ["ls-tree", "-r", "--name-only", commit] + list(DIRS),
                                    universal_newlines=True).split()
    for name in sorted(names):
        if not name.endswith(".xml"):
            continue
        text = subprocess.check_output(git + ["show", "%s:%s" % (commit, name)], universal_newlines=True)
        docs = re.findall(r"^<domain\b.*?^</domain>\n?", text, re.S | re.M)
        for number, doc in enumerate(docs, 1):
            base = os.path.basename(name)[:-4] + ("-%d" % number if len(docs) > 1 else "")
            local = base + ".xml"
            with open(os.path.join(out_dir, local), "w") as handle:
                handle.write(doc if doc.endswith("\n") else doc + "\n")
            sources["virt-manager/" + local] = {
                "origin": "https://github.com/virt-manager/virt-manager/blob/%s/%s" % (commit, name),
                "part": "%d of %d <domain> documents" % (number, len(docs)) if len(docs) > 1 else "whole file",
                "licence": "GPL-2.0-or-later (virt-manager)"}
    sources_file.replace_part(("virt-manager/",), sources)


if __name__ == "__main__":
    main(*sys.argv[1:])
