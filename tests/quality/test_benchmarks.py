"""docs/benchmarks.md is rendered from the stored results only (bench/render.py): rendering it again
from bench/results/*.json changes nothing, and every stored result is shown and says what made it."""

import json
import os
import sys

from helpers import ROOT

BENCH = os.path.join(ROOT, "bench")


def render_module():
    sys.path.insert(0, BENCH)
    try:
        import render
    finally:
        sys.path.remove(BENCH)
    return render


def test_rendering_the_stored_results_again_changes_nothing():
    render = render_module()
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as handle:
        page = handle.read()
    assert page == render.render(), "docs/benchmarks.md differs: run .venv/bin/python bench/render.py"


def test_every_stored_result_is_on_the_page_with_what_made_it():
    render = render_module()
    sections = [section[0] for section in render.SECTIONS]
    results = os.path.join(BENCH, "results")
    for name in sorted(os.listdir(results)):
        if not name.endswith(".json"):
            continue
        assert name[:-5] in sections, "%s is not rendered on any section" % name
        with open(os.path.join(results, name)) as handle:
            record = json.load(handle)
        for key in ("script", "date", "machine"):
            assert record.get(key), "%s has no %s" % (name, key)
        assert os.path.exists(os.path.join(ROOT, record["script"])), record["script"]
        page = "\n".join(render.section_lines(name[:-5]))
        assert "Source: `bench/results/%s`, written by `%s`" % (name, record["script"]) in page
