# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvm_probe
short_description: Decide between KVM and TCG by a probe that a /dev/kvm alone cannot fool
version_added: 0.1.0
description:
  - Reads the CPU flags. Without vmx or svm the answer is TCG at once.
  - With them and a C(/dev/kvm), boots a tiny Linux guest under KVM (the given kernel and a
    busybox initramfs) and answers KVM only when the guest reports within O(timeout). Some
    hosts have a C(/dev/kvm) on which firmware runs but Linux guests hang; they get TCG.
  - Also reports the vendor KVM module and whether nested virtualization is on.
  - Runs the same on the hypervisor (L0) and inside the virtual host (L1).
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  kernel:
    description:
      - Kernel for the test boot. Without it, vmx/svm plus C(/dev/kvm) count as KVM (RV(verified) is false).
    type: path
  busybox:
    description: A statically linked busybox for the test guest's initramfs.
    type: path
    default: /bin/busybox
  emulator:
    description: The QEMU binary.
    type: path
    default: /usr/bin/qemu-system-x86_64
  timeout:
    description: Seconds the test guest has to report.
    type: int
    default: 60
  emulated_cpu_ok:
    description:
      - Use KVM even when the CPU is QEMU's TCG emulation (model name C(QEMU TCG CPU ...)), as in a lab's
        virtual host on a machine without hardware virtualization. Its emulated SVM boots a short test
        guest, but longer nested guests under KVM on it have hung the whole virtual host, so by default
        such a CPU gets TCG.
    type: bool
    default: false
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: KVM or TCG?
  nestlab.pci.kvm_probe:
    kernel: /var/cache/nestlab/probe/vmlinuz
  register: accel

- name: Say it
  ansible.builtin.debug:
    msg: "{{ accel.accel }}: {{ accel.reason }}"
"""

RETURN = r"""
accel:
  description: V(kvm) or V(tcg).
  returned: always
  type: str
  sample: tcg
reason:
  description: Why.
  returned: always
  type: str
  sample: "the CPU flags show no vmx/svm: no hardware virtualization"
verified:
  description: True when a test guest really booted under KVM.
  returned: always
  type: bool
  sample: false
cpu_flag:
  description: V(vmx), V(svm) or null.
  returned: always
  type: str
  sample: null
dev_kvm:
  description: Whether C(/dev/kvm) exists.
  returned: always
  type: bool
  sample: true
nested:
  description: The vendor KVM module, whether it is loaded and whether its C(nested) parameter is on.
  returned: always
  type: dict
  sample: {module: kvm_intel, loaded: true, nested: true}
nested_module:
  description: The vendor KVM module the CPU flag calls for (C(kvm_intel) or C(kvm_amd)), or null.
  returned: always
  type: str
  sample: kvm_intel
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.accel import decide, nested_state


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kernel=dict(type="path"),
            busybox=dict(type="path", default="/bin/busybox"),
            emulator=dict(type="path", default="/usr/bin/qemu-system-x86_64"),
            timeout=dict(type="int", default=60),
            emulated_cpu_ok=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for key in ("kernel", "busybox", "emulator"):
        if params[key] and key != "emulator" and not os.path.isfile(params[key]):
            module.fail_json(msg="%s: %s does not exist or is not a file" % (key, params[key]))
    if params["kernel"] and not os.access(params["emulator"], os.X_OK):
        module.fail_json(msg="emulator: %s is not an executable" % params["emulator"])
    result = decide(params["emulator"], params["kernel"], params["busybox"], params["timeout"],
                    emulated_cpu_ok=params["emulated_cpu_ok"])
    result["nested"] = nested_state()
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
