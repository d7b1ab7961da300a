"""Shared bits of the benchmark scripts: the machine line and writing a Markdown section."""

import os
import sys


def cpu_model():
    with open("/proc/cpuinfo") as handle:
        return [l.split(":", 1)[1].strip() for l in handle if l.startswith("model name")][0]


def emit(lines, out=None):
    """Print the section and, with ``out``, write it to that file."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        with open(out, "w") as handle:
            handle.write(text)


def machine():
    return "%d cores (%s)" % (os.cpu_count(), cpu_model())
