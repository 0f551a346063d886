#!/usr/bin/env bash
# Install every Debian 12 package libvirtio needs to build, test, fuzz, document and run its
# integration tests (QEMU guests, DPDK, network namespaces). Run as root (or with sudo).
# Keep this list complete: a package a build or test needs and that is missing here is a bug.
set -euo pipefail

packages=(
    # toolchain and build
    build-essential
    g++
    cmake
    pkg-config
    # unit tests
    check
    libsubunit-dev
    valgrind
    # clang builds, sanitizers, libFuzzer (runtime is not pulled in by clang itself)
    clang
    libclang-rt-14-dev
    llvm
    # docs
    doxygen
    # event-loop adapter
    libev-dev
    # integration: QEMU guests (kernel + busybox initramfs)
    qemu-system-x86
    qemu-utils
    busybox-static
    cpio
    xz-utils
    # integration: network namespaces and traffic
    iproute2
    iputils-ping
    socat
    ethtool
    # integration: DPDK peers
    dpdk
    dpdk-dev
    # integration: Open vSwitch (userspace datapath, and with DPDK as a vhost-user front-end)
    openvswitch-switch
    openvswitch-switch-dpdk
    # scripts
    python3
)

# --list: print the package list (one per line) and install nothing; .ci/run uses it.
if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y "${packages[@]}"
