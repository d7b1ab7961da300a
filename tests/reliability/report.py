"""docs/reliability.md, written by the reliability tests when asked (NESTLAB_WRITE_DOCS=1) and only
after their asserts passed: each test owns one section (a '## ' heading) and rewrites it only when it
ran whole, so a partial run (-k) leaves the figures of the last full one. A plain test run leaves the
checkout as it was."""

import datetime
import os
import platform
import re
import tempfile

from helpers import ROOT

PATH = os.path.join(ROOT, "docs", "reliability.md")
HEAD = ("# Reliability and security figures\n\n"
        "Written by the test run (`bash scripts/test.sh tests/reliability`), not by hand: each section\n"
        "below comes from the test named under it, on the machine and date it names.\n")


def machine():
    cores = os.cpu_count()
    return "%s, %d cores, Python %s" % (platform.machine(), cores, platform.python_version())


def sections(text):
    """{heading: body} of the '## ' sections of ``text``, in order."""
    out = {}
    current = None
    for line in text.splitlines(True):
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line
    return out


def normalise(text):
    """``text`` without what changes every run: the tests' own domain names and pytest directories."""
    text = re.sub(r"\b(nltest-[a-z]+)-[0-9a-f]{6}\b", r"\1-XXXXXX", text)
    return re.sub(re.escape(tempfile.gettempdir()) + r"/pytest-of-[^/ ]+/pytest-[0-9]+/[^/ |`']+", "$TMP", text)


def write_section(heading, test, lines):
    """Replace (or add) the section ``heading`` of docs/reliability.md with ``lines`` (with NESTLAB_WRITE_DOCS=1)."""
    if os.environ.get("NESTLAB_WRITE_DOCS") != "1":
        return
    try:
        with open(PATH) as handle:
            known = sections(handle.read())
    except IOError:
        known = {}
    body = ["", "Test: `%s`; %s; %s." % (test, machine(), datetime.date.today().isoformat()), ""]
    known[heading] = normalise("\n".join(body + list(lines)) + "\n\n")
    text = HEAD + "".join("\n## %s\n%s" % (name, content.rstrip("\n") + "\n") for name, content in known.items())
    tmp = PATH + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.rename(tmp, PATH)
