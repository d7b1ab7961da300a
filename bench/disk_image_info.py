"""Read the four figures of many qcow2 images in one nestlab.pci.disk_image_info call.

Makes N qcow2 images (10 kinds: cluster sizes, refcount widths, extended L2, a backing file, some
data written, copied to N files), then runs the module as Ansible does (a whole Python process
with an arguments file), with and without the qemu-img measure cross-check. Wall clock, median
of --repeat runs. Also shows that the call reads headers and tables only: bytes read from the
images (from /proc/<pid>/io, rchar) against their total allocation.

    .venv/bin/python bench/disk_image_info.py --images 1000 --repeat 5 [--write]   # saves bench/results/disk-image-info.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _report import add_write_option, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = [
    ("qcow2", "cluster_size=65536", "10G"),
    ("qcow2", "cluster_size=4096,refcount_bits=64", "2G"),
    ("qcow2", "cluster_size=2097152,refcount_bits=1", "100G"),
    ("qcow2", "cluster_size=65536,extended_l2=on", "40G"),
    ("qcow2", "cluster_size=65536,preallocation=metadata", "1G"),
    ("qcow2", "compat=0.10", "8G"),
    ("qcow2", "cluster_size=16384,refcount_bits=8", "512M"),
    ("qcow2", "cluster_size=524288", "1T"),
    ("qcow2", "cluster_size=65536,lazy_refcounts=on", "20G"),
    ("qcow2", "cluster_size=65536", "64M"),
]


def make_images(directory, count):
    kinds = []
    for index, (fmt, opts, size) in enumerate(KINDS):
        path = os.path.join(directory, "kind%d.qcow2" % index)
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, "-o", opts, path, size], check=True)
        if index == 9:
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", path], check=True,
                           stdout=subprocess.DEVNULL)
        kinds.append(path)
    paths = []
    for number in range(count):
        path = os.path.join(directory, "img%04d.qcow2" % number)
        # sparse: the preallocated kind is 1 GiB long with a few MiB allocated
        subprocess.run(["cp", "--sparse=always", kinds[number % len(kinds)], path], check=True)
        paths.append(path)
    return paths


def run_module(paths, cross_check):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "collections"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"paths": paths, "cross_check": cross_check}}, handle)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ansible_collections.nestlab.pci.plugins.modules.disk_image_info",
                             handle.name], stdout=subprocess.PIPE, env=env, universal_newlines=True)
    out, dummy = proc.communicate()
    seconds = time.monotonic() - start
    os.unlink(handle.name)
    result = json.loads(out)
    assert not result.get("failed") and len(result["images"]) == len(paths), result.get("msg")
    return seconds, result


def read_bytes(paths):
    """Bytes the module's process reads, by a traced run: rchar of /proc/<pid>/io at exit."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "collections"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"paths": paths, "cross_check": False}}, handle)
    code = ("import atexit, runpy, sys\n"
            "def io():\n"
            "    sys.stderr.write(open('/proc/self/io').read())\n"
            "atexit.register(io)\n"
            "sys.argv = ['disk_image_info', sys.argv[1]]\n"
            "runpy.run_module('ansible_collections.nestlab.pci.plugins.modules.disk_image_info', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code, handle.name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env, universal_newlines=True, check=False)
    os.unlink(handle.name)
    fields = dict(line.split(": ") for line in proc.stderr.splitlines() if ": " in line)
    return int(fields["rchar"])


def qemu_img_version():
    out = subprocess.run(["qemu-img", "--version"], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return out.stdout.splitlines()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    add_write_option(parser)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="nltest-bench-images-")
    try:
        paths = make_images(directory, args.images)
        allocation = sum(os.stat(p).st_blocks * 512 for p in paths)
        rows = []
        for cross_check in (True, False):
            runs = [run_module(paths, cross_check) for dummy in range(args.repeat)]
            seconds = [round(r[0], 4) for r in runs]
            methods = set(i["method"].split(";")[0].split(" (")[0] for i in runs[0][1]["images"])
            rows.append((cross_check, seconds, methods))
        read = read_bytes(paths)
    finally:
        shutil.rmtree(directory)
    save("disk-image-info", {"images": args.images, "repeat": args.repeat, "kinds": len(KINDS),
                             "qemu_img": qemu_img_version(), "read_bytes": read, "allocated_bytes": allocation,
                             "rows": [{"cross_check": cross_check, "seconds": seconds, "methods": sorted(methods)}
                                      for cross_check, seconds, methods in rows]}, args.write)


if __name__ == "__main__":
    main()
