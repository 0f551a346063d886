#!/usr/bin/env bash
# net_packet.sh — issue 4 end-to-end tests over the AF_PACKET backend on a veth pair, each in
# its own network namespace, cleaned up on every exit path (netns.sh traps).
#
# usage: net_packet.sh <path/to/net_e2e> [ping] [tso] [gro]     (default: all three)
#
# In every test the AF_PACKET backend binds veth0 (no address); its peer veth1 is the
# kernel's side.
#   ping  veth1 10.0.0.1/24, the guest is 10.0.0.2: ARP + ICMP echo both ways, counted on
#         both ends (guest, kernel ICMP counters, veth1 statistics).
#   tso   veth0 with TSO, GSO and TX checksumming off (software segmentation on transmit);
#         the guest sends one 64 KiB TSO frame, a packet socket on veth1 counts segments.
#   gro   as ping; a kernel TCP sender streams 1 MiB over veth1 (TSO on) to the guest, which
#         must see GSO super-frames in mergeable buffers and the exact stream.
#
# Exit 0 pass, 1 fail, 77 skip (not root).
set -euo pipefail

bin=${1:?usage: net_packet.sh <net_e2e> [ping] [tso] [gro]}
shift
tests=("$@")
[[ ${#tests[@]} -gt 0 ]] || tests=(ping tso gro)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: net_packet needs root (network namespaces, packet sockets)"
    exit 77
fi
# shellcheck source=../support/guest/netns.sh
. "$here/../support/guest/netns.sh"

ns_prepare() {
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
}

mac_of() { # NS IF
    ip -n "$1" -o link show "$2" | awk '{for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1)}'
}

veth_pair() { # NS ADDR1
    vio_netns_add_veth "$1" veth0 - "$1" veth1 "$2"
}

test_ping() {
    vio_netns_create pkt-ping
    local a=$VIO_NETNS
    ns_prepare "$a"
    veth_pair "$a" 10.0.0.1/24
    vio_run ip netns exec "$a" "$bin" packet-ping --ifname veth0 --guest-ip 10.0.0.2 \
        --host-ip 10.0.0.1 --stat-if veth1 --count 10
}

test_tso() {
    vio_netns_create pkt-tso
    local a=$VIO_NETNS
    ns_prepare "$a"
    veth_pair "$a" -
    ip netns exec "$a" ethtool -K veth0 tx off tso off gso off >/dev/null
    ip netns exec "$a" ethtool -K veth1 gro off >/dev/null 2>&1 || true
    local peer_mac
    peer_mac=$(mac_of "$a" veth1)
    vio_run ip netns exec "$a" "$bin" packet-tso --ifname veth0 --guest-ip 10.0.0.2 \
        --peer-ip 10.0.0.3 --peer-mac "$peer_mac" --peer-if veth1 --stat-if veth1
}

test_gro() {
    vio_netns_create pkt-gro
    local a=$VIO_NETNS
    ns_prepare "$a"
    veth_pair "$a" 10.0.0.1/24
    vio_run ip netns exec "$a" "$bin" packet-gro --ifname veth0 --guest-ip 10.0.0.2 \
        --host-ip 10.0.0.1 --bytes 1048576
}

rc=0
for t in "${tests[@]}"; do
    case $t in
    ping | tso | gro) ;;
    *) echo "net_packet.sh: unknown test '$t'" >&2; exit 2 ;;
    esac
    echo "=== packet $t"
    # A subshell per test: errexit applies inside it, and its own netns.sh EXIT trap removes
    # that test's namespaces whatever happens. It runs in the background so that a signal to
    # this script is passed on at once (the subshell's traps then clean up).
    set +e
    ( set -e; "test_$t" ) &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
    trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
    trap 'kill -HUP "$child" 2>/dev/null; wait "$child"; exit 129' HUP
    wait "$child"
    st=$?
    trap - TERM INT HUP
    set -e
    if [[ $st -eq 0 ]]; then echo "=== packet $t: PASS"; else echo "=== packet $t: FAIL ($st)"; rc=1; fi
done
exit $rc
