#!/bin/sh
# Build the nestlab L1 base image: debootstrap, configure, ext4 filesystem made from the tree,
# GRUB embedded by hand (no partition device nodes are needed), qcow2. Stages are stamped in
# $WORK so that an interrupted build resumes; the image appears at $OUT only when complete.
#
# Environment: SUITE MIRROR PACKAGES (comma list) SIZE_GB OUT WORK, and FLAVOUR:
#   nestlab (default) - the lab's image: SSH keys from QEMU fw_cfg, DHCP on the management NIC;
#   cloud             - a generic cloud-style image that cloud-init configures from a NoCloud seed
#                       (PACKAGES must include cloud-init); the tests use it for the cloud-image path.
# and IOMMU (nestlab flavour only): intel - the image boots with the kernel arguments of guest_iommu's
#   intel model (intel_iommu=on iommu=pt) and carries that role's GRUB drop-in, written as the role
#   writes it, so that a lab with the default vIOMMU needs no reboot; none (default) - without them.
set -eu
: "${SUITE:?}" "${MIRROR:?}" "${PACKAGES:?}" "${SIZE_GB:?}" "${OUT:?}" "${WORK:?}"
FLAVOUR="${FLAVOUR:-nestlab}"
case "$FLAVOUR" in nestlab|cloud) ;; *) echo "FLAVOUR: '$FLAVOUR' is not valid; nestlab or cloud" >&2; exit 2 ;; esac
IOMMU="${IOMMU:-none}"
case "$FLAVOUR/$IOMMU" in
  nestlab/intel) IOMMU_ARGS=" intel_iommu=on iommu=pt" ;;
  */none) IOMMU_ARGS="" ;;
  *) echo "IOMMU: '$IOMMU' is not valid for FLAVOUR $FLAVOUR; intel (nestlab only) or none" >&2; exit 2 ;;
esac
ROOTFS="$WORK/rootfs"
RAW="$WORK/disk.raw"
LOG="$WORK/build.log"
mkdir -p "$WORK"
# on failure, show the end of the build log (the caller may remove $WORK) and the free space where
# the build writes: a full disk shows in debootstrap's log only as a download that failed
on_exit() {
  rc=$?
  [ "$rc" -ne 0 ] || return 0
  if [ -f "$LOG" ]; then echo "build failed; last lines of $LOG:" >&2; tail -n 25 "$LOG" >&2; fi
  avail=$(df -Pk "$WORK" 2>/dev/null | awk 'NR == 2 {print $4}')
  if [ -n "$avail" ]; then
    full=""; [ "$avail" -lt 65536 ] && full=": the disk is full"
    echo "build failed (exit $rc) with $((avail / 1024)) MiB free where it writes ($WORK)$full" >&2
  fi
}
trap on_exit EXIT
stage() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$LOG" >&2; }
done_stage() { touch "$WORK/.done-$1"; }
is_done() { [ -e "$WORK/.done-$1" ]; }

if ! is_done debootstrap; then
  stage "debootstrap $SUITE (packages: $PACKAGES)"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >>"$LOG" 2>&1
  done_stage debootstrap
fi

if ! is_done configure; then
  stage "configure the guest system"
  echo 'LABEL=nestlab-root / ext4 errors=remount-ro 0 1' > "$ROOTFS/etc/fstab"
  rm -f "$ROOTFS"/etc/ssh/ssh_host_*
  if [ "$FLAVOUR" = cloud ]; then
    echo debian > "$ROOTFS/etc/hostname"
    printf '127.0.0.1 localhost\n' > "$ROOTFS/etc/hosts"
    # as the distributions' cloud images do: look for a NoCloud seed only, network from cloud-init
    printf 'datasource_list: [NoCloud, None]\n' > "$ROOTFS/etc/cloud/cloud.cfg.d/90-nestlab-datasource.cfg"
  else
    echo nestlab-l1 > "$ROOTFS/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 nestlab-l1\n' > "$ROOTFS/etc/hosts"
    # management NIC (the lab VM gives it this MAC): DHCP from QEMU's user-mode network.
    # Lab NICs stay unconfigured, so that replies never leave through them.
    mkdir -p "$ROOTFS/etc/systemd/network"
    printf '[Match]\nMACAddress=52:54:00:4e:4c:4d\n\n[Network]\nDHCP=ipv4\n' \
      > "$ROOTFS/etc/systemd/network/10-nestlab-mgmt.network"
    # SSH: keys come from QEMU's fw_cfg (set per lab by the host), nothing is baked into the image
    echo qemu_fw_cfg > "$ROOTFS/etc/modules-load.d/nestlab.conf"
    cat > "$ROOTFS/usr/local/sbin/nestlab-fwcfg" <<'SH'
#!/bin/sh
# nestlab-fwcfg NAME: print the fw_cfg entry opt/nestlab/NAME (empty when there is none)
f="/sys/firmware/qemu_fw_cfg/by_name/opt/nestlab/$1/raw"
[ -r "$f" ] && cat "$f"
exit 0
SH
    chmod 0755 "$ROOTFS/usr/local/sbin/nestlab-fwcfg"
    cat > "$ROOTFS/etc/systemd/system/nestlab-hostkey.service" <<'UNIT'
[Unit]
Description=SSH host key from the hypervisor (fw_cfg), or a new one
Before=ssh.service
After=systemd-modules-load.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'k=$(/usr/local/sbin/nestlab-fwcfg ssh_host_ed25519_key); if [ -n "$k" ]; then umask 077; printf "%%s\\n" "$k" > /etc/ssh/ssh_host_ed25519_key; ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub; fi; ssh-keygen -A'

[Install]
WantedBy=multi-user.target
UNIT
    cat > "$ROOTFS/etc/ssh/sshd_config.d/nestlab.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysCommand /usr/local/sbin/nestlab-fwcfg authorized_keys
AuthorizedKeysCommandUser root
UseDNS no
CONF
    chroot "$ROOTFS" systemctl enable systemd-networkd nestlab-hostkey.service ssh >>"$LOG" 2>&1
  fi
  # fewer things to do at boot under TCG
  for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
              systemd-networkd-wait-online.service libvirtd.service libvirt-guests.service virtlogd.service \
              virtlockd.service; do
    chroot "$ROOTFS" systemctl disable "$unit" >>"$LOG" 2>&1 || true
  done
  rm -f "$ROOTFS/etc/libvirt/qemu/networks/autostart/default.xml"
  chroot "$ROOTFS" passwd -l root >>"$LOG" 2>&1
  # GRUB as update-grub inside the guest will write it too. cryptomgr.notests: the kernel's crypto
  # self-tests cost seconds of every boot under TCG and prove nothing in a lab
  cat > "$ROOTFS/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 cryptomgr.notests"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB
  mkdir -p "$ROOTFS/etc/default/grub.d"
  if [ -n "$IOMMU_ARGS" ]; then
    # byte for byte what guest_iommu writes for the intel model with iommu=pt (its vars/main.yml:
    # guest_iommu_dropin_content), so that the role finds nothing to do
    printf '# nestlab.pci guest_iommu: IOMMU kernel arguments (intel)\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX%s"\n' \
      "$IOMMU_ARGS" > "$ROOTFS/etc/default/grub.d/60-nestlab-iommu.cfg"
  fi
  mkdir -p "$ROOTFS/boot/grub/i386-pc"
  cp "$ROOTFS"/usr/lib/grub/i386-pc/*.mod "$ROOTFS"/usr/lib/grub/i386-pc/*.lst "$ROOTFS/boot/grub/i386-pc/"
  kernel="$(cd "$ROOTFS/boot" && ls vmlinuz-* | sort -V | tail -n 1)"
  initrd="initrd.img-${kernel#vmlinuz-}"
  cat > "$ROOTFS/boot/grub/grub.cfg" <<CFG
# written at image build; update-grub inside the guest replaces it
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --label --set=root nestlab-root
linux /boot/$kernel root=LABEL=nestlab-root ro console=ttyS0,115200n8 cryptomgr.notests$IOMMU_ARGS
initrd /boot/$initrd
boot
CFG
  chroot "$ROOTFS" apt-get clean >>"$LOG" 2>&1
  done_stage configure
fi

if ! is_done disk; then
  stage "make a ${SIZE_GB} GiB disk with an ext4 filesystem from the tree"
  rm -f "$RAW" "$WORK/part.raw"
  truncate -s "${SIZE_GB}G" "$RAW"
  printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$RAW"
  part_bytes=$(( SIZE_GB * 1024 * 1024 * 1024 - 2048 * 512 ))
  truncate -s "$part_bytes" "$WORK/part.raw"
  mkfs.ext4 -q -L nestlab-root -d "$ROOTFS" "$WORK/part.raw"
  dd if="$WORK/part.raw" of="$RAW" bs=1M seek=1 conv=notrunc,sparse status=none
  rm -f "$WORK/part.raw"
  stage "embed GRUB"
  grubdir="$ROOTFS/usr/lib/grub/i386-pc"
  chroot "$ROOTFS" grub-mkimage -O i386-pc -o /tmp/core.img -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 search search_label >>"$LOG" 2>&1
  core_sectors=$(( ($(stat -c %s "$ROOTFS/tmp/core.img") + 511) / 512 ))
  [ "$core_sectors" -lt 2047 ] || { echo "core.img does not fit before the partition" >&2; exit 1; }
  dd if="$grubdir/boot.img" of="$RAW" bs=440 count=1 conv=notrunc status=none
  dd if="$ROOTFS/tmp/core.img" of="$RAW" bs=512 seek=1 conv=notrunc status=none
  rm -f "$ROOTFS/tmp/core.img"
  done_stage disk
fi

stage "convert to qcow2"
qemu-img convert -O qcow2 "$RAW" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
stage "done: $OUT"
