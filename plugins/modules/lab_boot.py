# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lab_boot
short_description: Start a lab's virtual host, or reset it, and wait until it answers SSH; boots that hang are reset
version_added: 0.1.0
description:
  - Runs on the hypervisor. Starts the domain when it is not running (or, with O(reset=true),
    resets it at once) and waits for an SSH banner on C(127.0.0.1:)O(ssh_port), the guest's
    forwarded port.
  - Under TCG a guest with more vCPUs than the host has cores now and then hangs early in boot;
    a boot that brings no SSH within O(timeout) seconds is reset and tried again, O(attempts)
    times in all. On failure the message ends with the last lines of O(console_log).
  - A running guest that already answers is left alone and reported unchanged.
  - A guest whose emulator ends while it is waited for (libvirt's reason C(crashed) - QEMU died, from
    a signal or a crash of its own) is started again as the next attempt; Debian 12's QEMU 7.2 now
    and then segfaults under TCG. A guest that stops otherwise (powered off, destroyed), or whose
    emulator ends on the last attempt, fails the module at once, with the console's last lines;
    the next run starts it again.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  ssh_port:
    description: The port on 127.0.0.1 that is forwarded to the guest's SSH.
    type: int
    required: true
  timeout:
    description: Seconds one boot has to bring up SSH.
    type: int
    default: 240
  attempts:
    description: How many boots to try.
    type: int
    default: 3
  reset:
    description: Reset the guest first (for a guest that did not come back from a reboot).
    type: bool
    default: false
  after_reboot:
    description:
      - The guest has just been told to reboot. Wait until its SSH stops answering (at most O(timeout)
        seconds), then until it answers again; a guest that does not come back in time is reset, as
        a boot that hangs is.
      - Quicker than polling the guest over an SSH connection that the reboot may have left dangling.
    type: bool
    default: false
  console_log:
    description:
      - The guest's serial console log, quoted in the failure message and watched for progress
        (O(stall_timeout)).
    type: path
  stall_timeout:
    description:
      - A boot whose O(console_log) has not grown for this many seconds, and that brings no SSH, has
        stopped making progress. It is reset at once as the next attempt, without waiting for the
        rest of O(timeout) (an early hang under TCG otherwise costs the whole O(timeout)).
      - V(0), or no O(console_log), turns the check off. A normal boot of the lab's guest is seldom
        silent for more than a few seconds; the default leaves room for a machine several times slower.
      - A guest found running without SSH (not one told to reboot) counts as silent since its console log
        was last written, so one that hung before this run began (its console silent for this long
        already) is reset after a short grace (10 seconds, or less when this is shorter), not after
        another O(stall_timeout).
    type: int
    default: 120
extends_documentation_fragment:
  - nestlab.pci.domain
attributes:
  check_mode:
    support: full
    description: Says whether it would start or reset the guest, and does neither.
  diff_mode:
    support: none
    description: Changes the run state, not a definition.
  idempotent:
    support: full
    description: A running guest that answers SSH is left alone.
"""

EXAMPLES = r"""
- name: Start the lab and wait for SSH
  nestlab.pci.lab_boot:
    name: nestlab
    ssh_port: 40022
    console_log: /var/lib/nestlab/labs/nestlab/console.log
"""

RETURN = r"""
log:
  description: What happened, one line per step.
  returned: always
  type: list
  elements: str
  sample: ["started", "no console output for 120 s and no SSH on attempt 1: reset", "SSH answers (attempt 2)"]
attempt:
  description: The attempt on which SSH answered (0 when the guest already answered).
  returned: success
  type: int
  sample: 1
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import (
    ConsoleProgress,
    console_tail,
    domain_argument_spec,
    libvirt,
    open_domain,
    require_libvirt,
)


def banner(port, timeout, alive=None, stalled=None):
    """True once something on 127.0.0.1:port greets with an SSH banner within ``timeout`` seconds; None
    as soon as ``alive()`` says the guest is gone (killed or powered off while we wait); "stalled" as
    soon as ``stalled()`` says the boot stopped making progress."""
    deadline = time.time() + timeout
    while True:
        if alive is not None and not alive():
            return None
        if stalled is not None and stalled():
            return "stalled"
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                sock.settimeout(10)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
            finally:
                sock.close()
        except (OSError, socket.error):
            pass
        if time.time() >= deadline:
            return False
        time.sleep(2)


def with_console(msg, console_log):
    """``msg``, ended with the last lines of ``console_log`` when there is one."""
    if not console_log:
        return msg
    return msg + "; last console lines:\n" + console_tail(console_log, empty="(no console log)")


def gone_quiet(port, timeout):
    """True once nothing greets with an SSH banner on 127.0.0.1:port, within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while banner(port, 0):
        if time.time() >= deadline:
            return False
        time.sleep(1)
    return True


# seconds a guest found running without SSH gets to show life (a banner or console output) when its
# console has been silent for stall_timeout already
FOUND_GRACE = 10


def emulator_died(dom):
    """True when libvirt says the domain is off because its QEMU process ended (reason 'crashed')."""
    try:
        state, reason = dom.state()
    except libvirt.libvirtError:
        return False
    return state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED


def main():
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            ssh_port=dict(type="int", required=True),
            timeout=dict(type="int", default=240),
            attempts=dict(type="int", default=3),
            reset=dict(type="bool", default=False),
            after_reboot=dict(type="bool", default=False),
            console_log=dict(type="path"),
            stall_timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    require_libvirt(module)
    p = module.params
    for field, low in (("ssh_port", 1), ("timeout", 1), ("attempts", 1), ("stall_timeout", 0)):
        if p[field] < low or (field == "ssh_port" and p[field] > 65535):
            module.fail_json(msg="%s: %r is not valid; %s" % (
                field, p[field], "a TCP port, 1-65535" if field == "ssh_port" else "a whole number, %d or more" % low))
    dummy, dom = open_domain(module, p["uri"], p["name"])
    log = []
    running = dom.isActive()
    if p["after_reboot"] and running and not module.check_mode:
        if not gone_quiet(p["ssh_port"], p["timeout"]):
            module.fail_json(msg="SSH on port %d still answers %d s after the reboot was asked for: %s did not reboot"
                                 % (p["ssh_port"], p["timeout"], p["name"]), log=log)
        log.append("SSH stopped answering (the guest is rebooting)")
    elif running and not p["reset"] and banner(p["ssh_port"], 0):
        module.exit_json(changed=False, log=["SSH answers"], attempt=0)
    if module.check_mode:
        action = "reset" if running and p["reset"] else "wait for" if running else "start"
        module.exit_json(changed=True, log=["would %s" % action], attempt=0)
    changed = False
    # a guest found running and not answering (no reboot asked for, no reset): its silence began before us
    found_silent = running and not p["after_reboot"] and not p["reset"]
    for attempt in range(1, p["attempts"] + 1):
        try:
            if not dom.isActive():
                dom.create()
                log.append("started")
                changed = True
            elif p["reset"] and attempt == 1:
                dom.reset(0)
                log.append("reset")
                changed = True
        except libvirt.libvirtError as exc:
            module.fail_json(msg="cannot start %s: %s" % (p["name"], exc), log=log)
        progress = ConsoleProgress(p["console_log"], p["stall_timeout"],
                                   grace=FOUND_GRACE if attempt == 1 and found_silent else None) \
            if p["console_log"] else None
        answered = banner(p["ssh_port"], p["timeout"], alive=dom.isActive, stalled=progress and progress.stopped)
        if answered is True:
            log.append("SSH answers (attempt %d)" % attempt)
            module.exit_json(changed=changed, log=log, attempt=attempt)
        if answered is None and attempt < p["attempts"] and emulator_died(dom):
            log.append("the emulator ended on attempt %d (crashed or killed): start again" % attempt)
            continue
        if answered is None:
            log.append("the guest stopped on attempt %d" % attempt)
            module.fail_json(msg=with_console("%s stopped while waiting for its SSH (killed, crashed or powered off);"
                                              " the next run starts it again" % p["name"], p["console_log"]),
                             log=log, changed=changed)
        # no SSH: the console stopped ("stalled") or the time ran out; reset for the next attempt
        what = ("no console output for %d s and no SSH" % p["stall_timeout"] if answered == "stalled"
                else "no SSH after %d s" % p["timeout"])
        if attempt < p["attempts"]:
            log.append("%s on attempt %d: reset" % (what, attempt))
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        elif answered == "stalled":
            log.append("%s on attempt %d: given up" % (what, attempt))
    if answered == "stalled":
        msg = "no SSH after %d attempts; the last stopped making progress (no console output for %d s)" % (
            p["attempts"], p["stall_timeout"])
    else:
        msg = "no SSH after %d attempts of %d s" % (p["attempts"], p["timeout"])
    module.fail_json(msg=with_console(msg, p["console_log"]), log=log, changed=changed)


if __name__ == "__main__":
    main()
