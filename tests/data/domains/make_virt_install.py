"""Make the generated part of the corpus: `virt-install --print-xml --dry-run` over a grid of options
(machine types, CPU modes and topologies, disks, controllers, graphics, channels, a host device,
memory backing, NUMA with numatune, every vIOMMU model and attribute libvirt 9 takes on x86,
qemu:commandline), written to virt-install/, and `virt-xml` edits of some of them, written to
virt-xml/; where each came from (the exact command) goes to SOURCES.json. Run by hand, once, on a
host with libvirtd and virtinst (Debian: apt-get install virtinst):

    python3 tests/data/domains/make_virt_install.py

The output is what this host's virt-install, libvirt and QEMU make of the options; it is kept, so
the corpus test needs none of them but libvirtd."""

import os
import shlex
import subprocess

import sources as sources_file  # noqa: E402  (beside this script)

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = ["virt-install", "--connect", "qemu:///system", "--print-xml", "--dry-run", "--osinfo", "linux2022",
        "--import", "--memory", "1024", "--noautoconsole"]
DISK = "path=/var/lib/libvirt/images/nlcorpus-%s.qcow2,size=1,format=qcow2"

# name: options; each is made for q35 and for i440fx (pc) unless the name ends in -q35 or -pc
GRID = {
    "plain": "--vcpus 2 --disk none --network none --graphics none",
    "host-model": "--vcpus 2 --cpu host-model --disk none --network none --graphics none",
    "maximum": "--vcpus 2 --cpu maximum --disk none --network none --graphics none",
    "custom-cpu": "--vcpus 2 --cpu Skylake-Client-IBRS,+vmx,-hle --disk none --network none --graphics none",
    "topology-sockets": "--vcpus 4,sockets=2,dies=1,cores=2,threads=1 --disk none --network none --graphics none",
    "topology-threads": "--vcpus 8,sockets=1,cores=4,threads=2 --disk none --network none --graphics none",
    "topology-current": "--vcpus 2,maxvcpus=8,sockets=4,cores=2,threads=1 --disk none --network none --graphics none",
    "virtio-disk": "--vcpus 2 --disk " + DISK % "a" + ",bus=virtio --network none --graphics none",
    "sata-scsi-disks": "--vcpus 2 --disk " + DISK % "b" + ",bus=sata --disk " + DISK % "c" + ",bus=scsi"
                       " --controller type=scsi,model=virtio-scsi --network none --graphics none",
    "cdrom": "--vcpus 2 --disk none --disk device=cdrom,bus=sata --network none --graphics none",
    "nics": "--vcpus 2 --disk none --network user,model=e1000e,mac=52:54:00:12:34:56"
            " --network user,model=virtio --graphics none",
    "vnc-vga": "--vcpus 2 --disk none --network none --graphics vnc,listen=127.0.0.1 --video vga",
    "spice-qxl": "--vcpus 2 --disk none --network none --graphics spice --video qxl --channel spicevmc",
    "channels": "--vcpus 2 --disk none --network none --graphics none"
                " --channel unix,target.type=virtio,name=org.qemu.guest_agent.0 --console pty,target.type=virtio",
    "hostdev": "--vcpus 2 --disk none --network none --graphics none --hostdev pci_0000_00_03_0",
    "hugepages": "--vcpus 2 --disk none --network none --graphics none"
                 " --memorybacking hugepages.page0.size=2,hugepages.page0.unit=M",
    "numa-numatune": "--vcpus 4 --cpu host-model,cell0.cpus=0-1,cell0.memory=524288,cell1.cpus=2-3,cell1.memory=524288"
                     " --numatune 0,mode=strict --disk none --network none --graphics none",
    "numa-distances": "--vcpus 4 --cpu maximum,cell0.cpus=0-1,cell0.memory=524288,cell1.cpus=2-3,cell1.memory=524288,"
                      "cell0.distances.sibling0.id=0,cell0.distances.sibling0.value=10,"
                      "cell0.distances.sibling1.id=1,cell0.distances.sibling1.value=21,"
                      "cell1.distances.sibling0.id=0,cell1.distances.sibling0.value=21,"
                      "cell1.distances.sibling1.id=1,cell1.distances.sibling1.value=10"
                      " --disk none --network none --graphics none",
    "memory-hotplug": "--vcpus 2 --memory 1024,maxMemory=4096,maxMemory.slots=4"
                      " --cpu maximum,cell0.cpus=0-1,cell0.memory=1048576 --disk none --network none --graphics none",
    "vcpupin": "--vcpus 8 --cputune vcpupin0.vcpu=0,vcpupin0.cpuset=0,vcpupin1.vcpu=7,vcpupin1.cpuset=1"
               " --disk none --network none --graphics none",
    "iothreads": "--vcpus 2 --iothreads 2 --disk " + DISK % "d" + ",bus=virtio,driver.iothread=1"
                 " --network none --graphics none",
    "iommu-intel-q35": "--vcpus 2 --iommu model=intel --features ioapic.driver=qemu --disk none --network none"
                      " --graphics none",
    "iommu-intel-all-q35": ("--vcpus 2 --iommu model=intel,driver.intremap=on,driver.caching_mode=on,driver.eim=on,"
                            "driver.iotlb=on,driver.aw_bits=48 --features ioapic.driver=qemu --disk none --network none"
                            " --graphics none"),
    "iommu-intel-off-q35": ("--vcpus 2 --iommu model=intel,driver.intremap=off,driver.caching_mode=off"
                            " --disk none --network none --graphics none"),
    "iommu-virtio-q35": "--vcpus 2 --iommu model=virtio --disk none --network none --graphics none",
    "iommu-virtio-pc": "--vcpus 2 --iommu model=virtio --disk none --network none --graphics none",
    "qemu-commandline": "--vcpus 2 --disk none --network none --graphics none"
                        " --qemu-commandline=-device --qemu-commandline=virtio-rng-pci",
    "expander-q35": "--vcpus 4 --cpu maximum,cell0.cpus=0-1,cell0.memory=524288,cell1.cpus=2-3,cell1.memory=524288"
                    " --controller type=pci,index=10,model=pcie-expander-bus,target.busNr=180,target.node=1"
                    " --disk none --network none --graphics none",
    "pci-expander-pc": "--vcpus 4 --cpu maximum,cell0.cpus=0-1,cell0.memory=524288,cell1.cpus=2-3,cell1.memory=524288"
                       " --controller type=pci,index=10,model=pci-expander-bus,target.busNr=100,target.node=1"
                       " --disk none --network none --graphics none",
    "many-devices": "--vcpus 2 --disk " + DISK % "e" + ",bus=virtio --network user,model=virtio --graphics vnc"
                    " --sound ich9 --rng /dev/urandom --watchdog i6300esb --serial pty"
                    " --input tablet,bus=usb --memballoon virtio --panic isa",
    "metadata": "--vcpus 2 --disk none --network none --graphics none"
                " --metadata title=corpus,description=from-virt-install",
}

# virt-xml edits of generated documents: name: (source, options)
EDITS = {
    "host-passthrough": ("plain-q35", "--edit --cpu host-passthrough"),
    "add-disk": ("plain-q35", "--add-device --disk " + DISK % "f" + ",bus=virtio"),
    "add-iommu": ("plain-q35", "--add-device --iommu model=intel,driver.caching_mode=on"),
    "add-hostdev": ("numa-numatune-q35", "--add-device --hostdev pci_0000_00_04_0"),
    "remove-usb": ("many-devices-q35", "--remove-device --controller type=usb"),
    "vcpus-4": ("topology-sockets-q35", "--edit --vcpus 4"),
    "memory-2g": ("numa-numatune-q35", "--edit --memory 2048"),
    "add-rootport": ("expander-q35", "--add-device --controller type=pci,index=11,model=pcie-root-port,address.type=pci,address.bus=10,address.slot=0"),
    "i440fx-add-nic": ("plain-pc", "--add-device --network user,model=e1000"),
    "qemu-commandline-edit": ("qemu-commandline-q35", "--edit --cpu host-model"),
}


def run(cmd, stdin=None):
    proc = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit("%s\n%s" % (" ".join(shlex.quote(c) for c in cmd), proc.stderr))
    return proc.stdout


def main():
    version = run(["virt-install", "--version"]).strip()
    sources = {}
    made = {}
    os.makedirs(os.path.join(HERE, "virt-install"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "virt-xml"), exist_ok=True)
    for name, options in sorted(GRID.items()):
        machines = [name.rsplit("-", 1)[1]] if name.endswith(("-q35", "-pc")) else ["q35", "pc"]
        stem = name.rsplit("-", 1)[0] if name.endswith(("-q35", "-pc")) else name
        for machine in machines:
            doc = "%s-%s" % (stem, machine)
            cmd = BASE + ["--name", "nlcorpus-" + doc, "--machine", machine] + shlex.split(options)
            made[doc] = run(cmd)
            local = "virt-install/%s.xml" % doc
            with open(os.path.join(HERE, local), "w") as handle:
                handle.write(made[doc])
            sources[local] = {"origin": "generated here by make_virt_install.py with virt-install %s" % version,
                              "command": " ".join(shlex.quote(c) for c in cmd), "licence": "generated (no third-party text)"}
    for name, (source, options) in sorted(EDITS.items()):
        cmd = ["virt-xml", "--connect", "qemu:///system"] + shlex.split(options)
        out = run(cmd, stdin=made[source])
        local = "virt-xml/%s.xml" % name
        with open(os.path.join(HERE, local), "w") as handle:
            handle.write(out)
        sources[local] = {"origin": "generated here by make_virt_install.py with virt-xml %s" % version,
                          "command": "%s < virt-install/%s.xml" % (" ".join(shlex.quote(c) for c in cmd), source),
                          "licence": "generated (no third-party text)"}
    sources_file.replace_part(("virt-install/", "virt-xml/"), sources)


if __name__ == "__main__":
    main()
