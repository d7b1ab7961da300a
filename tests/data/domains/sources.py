"""SOURCES.json: where each document of the corpus came from. Shared by the scripts that make parts of it."""

import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "SOURCES.json")


def replace_part(prefixes, entries):
    """Replace the entries under ``prefixes`` (folders such as 'virt-manager/') with ``entries``."""
    kept = {}
    if os.path.exists(PATH):
        with open(PATH) as handle:
            kept = dict((k, v) for k, v in json.load(handle).items() if not k.startswith(tuple(prefixes)))
    kept.update(entries)
    with open(PATH, "w") as handle:
        json.dump(kept, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print("%d documents" % len(entries))
