#!/usr/bin/env bash
# The README's first command: install dependencies, build, run the demo.
#   1. vio-ring-demo: a driver thread and a device thread over one shared split ring;
#   2. the main demo (examples/vmm/demo.sh): a Debian guest on vio-vmm, our VMM, on real KVM
#      (nested inside a QEMU TCG guest: this machine's /dev/kvm cannot run stock kernels);
#      its own virtio_pci + virtio_net drivers find our virtio-PCI card, the queues run in the
#      kernel's vhost-net (KVM ioeventfd in, irqfd out), and its pings leave through a tap and
#      an Open vSwitch bridge into a network namespace. Needs root; about a minute.
#   3. the vhost-user demo: a Debian guest under QEMU whose own virtio_net driver talks to
#      vio-vhost-user-net over vhost-user; the daemon bridges it to a tap in a network
#      namespace and the guest pings that namespace (examples/vhost-user-net/demo.sh).
# VIO_SKIP_DEPS=1 skips the package installation; extra arguments go to vio-ring-demo.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ "${VIO_SKIP_DEPS:-0}" != 1 ]; then
  "$here/scripts/deps.sh"
fi
build=${VIO_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target vio-ring-demo vio-vhost-user-net vio-vmm-static
echo
"$build/examples/vio-ring-demo" --count 100000 "$@"
echo
"$here/examples/vmm/demo.sh" "$build/examples/vio-vmm-static"
echo
"$here/examples/vhost-user-net/demo.sh" "$build/examples/vio-vhost-user-net"
