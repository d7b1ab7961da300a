"""Make ``ansible_collections.nestlab.pci`` importable from the checkout; shared fixtures."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import helpers  # noqa: E402

# The suite runs in tiers, quickest first; a tier with a failure stops the run before the next one
# (a broken planner need not wait for half an hour of boots to be reported). Each tier has a time
# limit per test (pytest-timeout), so a hung guest fails the run in minutes; a test may set its own
# with @pytest.mark.timeout(seconds). Within a tier, tests keep the order pytest collected them in.
TIERS = (
    ("unit", 120),        # pure code: spec, planner, XML engine, maths
    ("no daemon", 900),   # modules on XML files, roles' arguments, lint, sanity, docs, packaging
    ("libvirt", 600),     # a real libvirtd, nothing booted
    ("boot", 2400),       # guests booted under QEMU, images built; limits sized for a machine 2.7x slower
)


TIER_NAMES = [name for name, limit in TIERS]


def tier_of(item):
    """The index in TIERS of a collected test."""
    if item.get_closest_marker("boot") or item.get_closest_marker("slow"):
        return 3
    if item.get_closest_marker("libvirt"):
        return 2
    return 0 if os.sep + "unit" + os.sep in str(item.fspath) else 1


def uses_shared_lab(item):
    return "default_lab" in getattr(item, "fixturenames", ())


def has_background_job(item):
    return item.get_closest_marker("background") is not None


def runs_after_lab(item):
    return item.get_closest_marker("after_lab") is not None


def stops_libvirtd(item):
    return item.get_closest_marker("stops_libvirtd") is not None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected: only what runs is sorted and started
def pytest_collection_modifyitems(session, config, items):
    # the libvirt tier's tests that stop libvirtd run right after the unit tier: the shared lab and the
    # background jobs start after them, with the no-daemon tier, and build while the rest of the run goes
    # on; in the boot tier the tests that judge a background job late, then the shared lab's own tests, and
    # last the tests whose job starts once the shared lab is built
    items.sort(key=lambda item: (1 if stops_libvirtd(item) else tier_of(item), not stops_libvirtd(item),
                                 runs_after_lab(item), uses_shared_lab(item), has_background_job(item)))
    # background jobs (helpers.Job) of the collected tests start with the shared lab, or with the first test of
    # the tier their mark names (start="libvirt"); the after_lab ones once its lab is built (without a shared lab
    # in the run, the test starts its job when it asks for the result)
    config.nestlab_jobs = [(mark.args[0], TIER_NAMES.index(mark.kwargs.get("start", "no daemon")))
                           for item in items for mark in item.iter_markers("background")]
    helpers.SHARED_LAB.after = [mark.args[0] for item in items for mark in item.iter_markers("after_lab")]
    # the quality gates' commands start now, in the background (@pytest.mark.early(key, command))
    for item in items if not config.option.collectonly else []:
        for mark in item.iter_markers("early"):
            helpers.EARLY.start(*mark.args)
    config.nestlab_shared_lab = any(uses_shared_lab(item) for item in items)
    for item in items:
        if not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TIERS[tier_of(item)][1]))


_FAILED_TIERS = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        _FAILED_TIERS.add(tier_of(item))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if tier_of(item) >= 1 and not stops_libvirtd(item):
        if item.config.nestlab_shared_lab:
            helpers.SHARED_LAB.start()
        for job, tier in item.config.nestlab_jobs:
            if tier_of(item) >= tier:
                job.start()
    yield
    tier = tier_of(item)
    if nextitem is not None and tier_of(nextitem) > tier and _FAILED_TIERS:
        item.session.shouldstop = "the %s tier had failures: the later tiers were not run" % TIERS[tier][0]


class _Connection(object):
    """A libvirt connection that opens itself again (starting libvirtd) when the old one died: the
    fault tests stop and kill libvirtd, and later tests still hold this object."""

    def __init__(self):
        self._conn = helpers.ensure_libvirtd()

    def __getattr__(self, name):
        import libvirt

        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return getattr(self._conn, name)(*args, **kwargs)
            except libvirt.libvirtError as exc:
                # isAlive() stays true until a call fails: reconnect once when the daemon went away
                if exc.get_error_domain() != libvirt.VIR_FROM_RPC:
                    raise
                self._conn = helpers.ensure_libvirtd()
                return getattr(self._conn, name)(*args, **kwargs)
        return call


# Every test session holds this lock shared while it runs; a session that gets it exclusively is the
# only one, and only then removes the test domains an earlier run left (another session's running lab
# is not a leftover).
SESSIONS_LOCK = "/run/lock/nestlab-test-sessions.lock"


def _only_session():
    """True when no other test session runs; this one holds SESSIONS_LOCK shared from now on."""
    import fcntl

    handle = open(SESSIONS_LOCK, "a")
    _only_session.handle = handle  # kept open (and locked) for the whole session
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return False
    fcntl.flock(handle, fcntl.LOCK_SH)  # a downgrade: others may join now
    return True


@pytest.fixture(scope="session")
def conn():
    """A connection to a real libvirtd (started here when it does not answer); the test domains an
    earlier run left removed, when no other test session runs."""
    connection = _Connection()
    if _only_session():
        for dom in connection.listAllDomains():
            if dom.name().startswith(helpers.PREFIX) and dom.name() != helpers.SHARED_LAB.name:
                helpers.remove_domain(connection, dom.name())
    yield connection
    connection.close()


@pytest.fixture
def domain_name(conn):
    """A fresh domain name; whatever domain gets that name is removed afterwards."""
    names = []

    def make(tag="dom"):
        name = helpers.unique_name(tag)
        names.append(name)
        return name

    yield make
    for name in names:
        helpers.remove_domain(conn, name)
        helpers.remove_domain(conn, name + "-nestlab-probe")
        # the probe's console log stays for the user to read; a test removes its own
        log = "/var/cache/nestlab/probe/%s-nestlab-probe.console.log" % name
        if os.path.exists(log):
            os.unlink(log)


@pytest.fixture(scope="session")
def kernel():
    """Debian's x86_64 kernel image (vmlinuz only), fetched once into the probe cache."""
    import subprocess

    cache = "/var/cache/nestlab/probe"
    path = os.path.join(cache, "vmlinuz")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        fetch = os.path.join(ROOT, "roles", "topology_probe", "files", "fetch-kernel.sh")
        subprocess.run(["sh", fetch, "linux-image-amd64", path], check=True)
    return path


def pytest_sessionfinish(session, exitstatus):
    # a shared lab that no test tore down (the run stopped before its tests): remove it
    helpers.SHARED_LAB.stop()
