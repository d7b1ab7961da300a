"""Issue 14: the XML modules on domain XML this project did not write (tests/data/domains, where each
document came from is in SOURCES.json), judged by libvirt itself.

Every document goes through every sequence below, on a file of its own. At each step: check mode
writes nothing and predicts ``changed``; the real run changes exactly then; a second real run says
``changed: false`` with an empty diff; no Python traceback, ever (a clean refusal, naming its field,
writes nothing and is counted); what the module neither owns nor manages (MANAGED below, the README's
"What each module changes") keeps its content and its order; stash then restore gives back the
document it started from. When libvirt accepts the input (``virDomainDefineXMLFlags`` with
VALIDATE under a throwaway name: the schema and the QEMU driver's own checks), it must accept every
output too. A summary table is printed; any failure fails the test.

The modules' main() run in this process (helpers.call_module: AnsibleModule reads the arguments as
in a real run), because the corpus makes thousands of calls; tests/integration/test_modules_file.py
runs them as separate processes, as Ansible does."""

import collections
import glob
import json
import os
import shutil

import pytest

from helpers import PREFIX, call_module

pytestmark = [pytest.mark.libvirt]

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data", "domains")
CORPUS = sorted(os.path.relpath(path, DATA) for path in glob.glob(os.path.join(DATA, "*", "*.xml")))

SMALL = {"accel": "tcg", "numa": [{"cpus": 2, "memory": "256MiB", "nics": 1}, {"cpus": 2, "memory": "256MiB", "nics": 1}]}
CELLS = [{"cpus": "0-1", "memory": "256MiB"}, {"cpus": "2-3", "memory": "256MiB"}]

# name: the module calls, in order, each on the output of the one before
SEQUENCES = collections.OrderedDict([
    ("lab_topology", [("lab_topology", {"spec": SMALL})]),
    ("numa, pci_expander, root_port", [("numa", {"cells": CELLS}), ("pci_expander", {"id": "corpus", "node": 1}),
                                       ("root_port", {"id": "corpus", "expander": "corpus"})]),
    ("iommu", [("iommu", {})]),
    ("hostdev", [("hostdev", {"address": "0000:b5:00.0"})]),
    ("stash, restore", [("stash", {"key": "corpus", "xpath": "./devices/*[last()]"}),
                        ("stash", {"key": "corpus", "state": "restored"})]),
])

# What each module changes besides the devices it owns (alias ua-nestlab-...): the parts removed from
# both documents before their foreign content is compared. XPath from <domain>.
CPU_AND_MEMORY = ["./cpu/@mode", "./cpu/@match", "./cpu/@check", "./cpu/@migratable", "./cpu/model", "./cpu/vendor",
                  "./cpu/numa", "./cpu/topology/@sockets", "./vcpu", "./memory", "./currentMemory"]
MANAGED = {
    "lab_topology": CPU_AND_MEMORY + ["./@type", "./cpu/feature[@name='svm' or @name='vmx']", "./features/ioapic",
                                      "./devices/iommu/driver/@intremap", "./devices/iommu/driver/@caching_mode",
                                      "./devices/iommu/driver/@eim", "./devices/iommu[not(driver/@*)]/driver"],
    "numa": CPU_AND_MEMORY,
    "pci_expander": [],
    "root_port": [],
    "iommu": ["./features/ioapic", "./devices/iommu/driver/@intremap", "./devices/iommu/driver/@caching_mode",
              "./devices/iommu/driver/@eim", "./devices/iommu[not(driver/@*)]/driver"],
    "hostdev": [],
    "stash": ["./metadata/*[namespace-uri()='urn:x-nestlab:pci:stash:1']", "./metadata[not(*)]"],
}
OURS = "./devices/*[starts-with(alias/@name, 'ua-nestlab-')]"


def parse(text):
    from lxml import etree
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True, huge_tree=False)
    return etree.fromstring(text.encode("utf-8") if isinstance(text, str) else text, parser)


def canonical(root):
    from lxml import etree
    return etree.tostring(root, method="c14n")


def foreign(text, module, taken=()):
    """The document without what ``module`` owns or manages (and without the elements of ``taken``)."""
    root = parse(text)
    for path in MANAGED[module] + [OURS] + list(taken):
        for node in root.xpath(path):
            if isinstance(node, str):  # an attribute
                node.getparent().attrib.pop(node.attrname)
            elif node.getparent() is not None:
                node.getparent().remove(node)
    # the devices the modules add or remove leave nothing else: no new empty containers
    for elem in root.xpath("./devices[not(*)] | ./cpu[not(* or @*)] | ./features[not(* or @*)]"):
        elem.getparent().remove(elem)
    return canonical(root)


class Libvirt(object):
    """Does libvirt's QEMU driver accept a document? Defined under a throwaway name, then undefined."""

    def __init__(self, conn):
        self.conn = conn

    def accepts(self, text, tag):
        import libvirt
        root = parse(text)
        if root.find("name") is None:
            root.insert(0, root.makeelement("name"))
        root.find("name").text = PREFIX + "corpus-" + tag
        for uuid in root.findall("uuid"):
            root.remove(uuid)
        from lxml import etree
        try:
            dom = self.conn.defineXMLFlags(etree.tostring(root, encoding="unicode"), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            return str(exc).splitlines()[0]
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 0))
        return None


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def crashed(result):
    """A module result that comes from a Python exception, not from a refusal the module meant."""
    return "exception" in result or result.get("msg", "").startswith("unexpected error")


def run_sequence(doc, steps, work, libvirt_ok, check_libvirt):
    """Run the steps on a copy of ``doc``; (outcome, detail): outcome 'ok', 'refused' or a failure."""
    path = os.path.join(work, "domain.xml")
    shutil.copy(os.path.join(DATA, doc), path)
    start = read(path)
    for number, (module, args) in enumerate(steps):
        args = dict(args, path=path)
        before = read(path)
        pre = call_module(module, args, check=True, diff=True)
        if crashed(pre):
            return "traceback", "%s (check mode): %s" % (module, pre.get("msg"))
        if read(path) != before:
            return "check mode wrote", module
        real = call_module(module, args, diff=True)
        if crashed(real):
            return "traceback", "%s: %s" % (module, real.get("msg"))
        if real.get("failed") or pre.get("failed"):
            if read(path) != before:
                return "refusal wrote", "%s: %s" % (module, real.get("msg"))
            if bool(real.get("failed")) != bool(pre.get("failed")):
                return "check mode disagrees", "%s: check %r, real %r" % (module, pre.get("msg"), real.get("msg"))
            field = (real.get("error") or {}).get("field") or "?"
            return "refused", "%s: %s" % (module, field)
        if pre["changed"] != real["changed"]:
            return "check mode disagrees", "%s: check says changed=%s, the run %s" % (module, pre["changed"], real["changed"])
        after = read(path)
        if real["changed"] == (after == before):
            return "changed is wrong", "%s: changed=%s" % (module, real["changed"])
        again = call_module(module, args, diff=True)
        if again.get("failed") or again["changed"] or read(path) != after:
            return "not idempotent", "%s: %s" % (module, again.get("msg") or again.get("diff"))
        if module == "stash" and args.get("state") == "restored":
            if canonical(parse(after)) != canonical(parse(start)):
                return "restore differs", module
        else:
            # a stash takes its selection out of the document: the document before, without it
            taken = [args["xpath"]] if module == "stash" else []
            if foreign(after.decode("utf-8"), module) != foreign(before.decode("utf-8"), module, taken):
                return "foreign content changed", module
        if libvirt_ok:
            refused = check_libvirt(after, "%d" % number)
            if refused:
                return "libvirt refuses the output", "%s: %s" % (module, refused)
    return "ok", ""


FAILURES = ("traceback", "check mode wrote", "refusal wrote", "check mode disagrees", "changed is wrong",
            "not idempotent", "restore differs", "foreign content changed", "libvirt refuses the output")


def test_every_module_on_every_document_of_the_corpus(conn, tmp_path):
    with open(os.path.join(DATA, "SOURCES.json")) as handle:
        sources = json.load(handle)
    assert len(CORPUS) >= 100 and sorted(sources) == CORPUS, "every document has its origin in SOURCES.json"
    with open(os.path.join(os.path.dirname(os.path.dirname(HERE)), "README.md")) as handle:
        assert "on %d domain documents this project did not" % len(CORPUS) in handle.read(), "README's count"
    lv = Libvirt(conn)
    table = collections.OrderedDict((name, collections.Counter()) for name in SEQUENCES)
    failures, refusals = [], collections.Counter()
    accepted = 0
    for number, doc in enumerate(CORPUS):
        with open(os.path.join(DATA, doc), "rb") as handle:
            text = handle.read()
        refused = lv.accepts(text, "in")
        accepted += refused is None
        for name, steps in SEQUENCES.items():
            work = str(tmp_path / ("%d-%d" % (number, len(table[name]))))
            os.makedirs(work, exist_ok=True)
            outcome, detail = run_sequence(doc, steps, work, refused is None, lv.accepts)
            table[name][outcome] += 1
            if outcome in FAILURES:
                failures.append("%s | %s | %s | %s" % (doc, name, outcome, detail))
            elif outcome == "refused":
                refusals[(name, detail)] += 1
            shutil.rmtree(work)
    lines = ["%d documents, %d accepted by libvirt as they are" % (len(CORPUS), accepted),
             "| sequence | ok | refused | failed |", "|---|---|---|---|"]
    for name, counts in table.items():
        lines.append("| %s | %d | %d | %d |" % (name, counts["ok"], counts["refused"],
                                                sum(counts[f] for f in FAILURES)))
    lines += ["", "refusals (sequence: module: field):"]
    lines += ["  %4d  %s: %s" % (count, name, detail) for (name, detail), count in sorted(refusals.items())]
    print("\n".join(lines))
    if os.environ.get("NESTLAB_CORPUS_FAILURES"):
        with open(os.environ["NESTLAB_CORPUS_FAILURES"], "w") as handle:
            handle.write("\n".join(failures) + "\n")
    assert not failures, "\n".join(lines + [""] + failures)
