#!/usr/bin/env bash
# net_tap.sh — issue 4 end-to-end tests over the tap backend, each in its own network
# namespace(s), cleaned up on every exit path (netns.sh traps).
#
# usage: net_tap.sh <path/to/net_e2e> [ping] [tso] [gro]     (default: all three)
#
#   ping  namespace A: tap vtap0 10.0.0.1/24. The guest (our driver helper + device model
#         + tap backend) is 10.0.0.2: ARP + ICMP echo both ways, counted on both ends.
#   tso   namespace A: bridge br0 with vtap0 and veth0 (TSO, GSO and TX checksumming off,
#         so the kernel must segment in software); veth1 in namespace B. The guest sends
#         one 64 KiB TSO frame; a packet socket on veth1 counts MTU-sized segments.
#   gro   namespace A: vtap0 10.0.0.1/24 and veth0 10.0.1.1/24 (GRO on), forwarding; veth1
#         10.0.1.2/24 in namespace B. A kernel TCP sender in B streams 1 MiB to the guest
#         through A's GRO and forwarding; the guest must see GSO super-frames in mergeable
#         buffers and the exact stream.
#
# Exit 0 pass, 1 fail, 77 skip (not root, no /dev/net/tun).
set -euo pipefail

bin=${1:?usage: net_tap.sh <net_e2e> [ping] [tso] [gro]}
shift
tests=("$@")
[[ ${#tests[@]} -gt 0 ]] || tests=(ping tso gro)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: net_tap needs root (network namespaces, tap devices)"
    exit 77
fi
if [[ ! -c /dev/net/tun ]]; then
    echo "SKIP: net_tap needs /dev/net/tun"
    exit 77
fi
# shellcheck source=../support/guest/netns.sh
. "$here/../support/guest/netns.sh"

ns_prepare() {
    # No IPv6 chatter (router solicitations, DAD) in the counts.
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
}

mac_of() { # NS IF
    ip -n "$1" -o link show "$2" | awk '{for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1)}'
}

test_ping() {
    vio_netns_create tap-ping
    local a=$VIO_NETNS
    ns_prepare "$a"
    vio_netns_add_tap vtap0 10.0.0.1/24 "$a"
    vio_run ip netns exec "$a" "$bin" tap-ping --ifname vtap0 --guest-ip 10.0.0.2 \
        --host-ip 10.0.0.1 --count 10
}

test_tso() {
    vio_netns_create tap-tso-a
    local a=$VIO_NETNS
    vio_netns_create tap-tso-b
    local b=$VIO_NETNS
    ns_prepare "$a"
    ns_prepare "$b"
    ip -n "$a" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$a" link set br0 up
    vio_netns_add_tap vtap0 - "$a"
    ip -n "$a" link set vtap0 master br0
    vio_netns_add_veth "$a" veth0 - "$b" veth1 10.0.0.3/24
    ip -n "$a" link set veth0 master br0
    # veth0 cannot segment or checksum: the bridge's transmit segments in software.
    ip netns exec "$a" ethtool -K veth0 tx off tso off gso off >/dev/null
    ip netns exec "$b" ethtool -K veth1 gro off >/dev/null 2>&1 || true
    local peer_mac
    peer_mac=$(mac_of "$b" veth1)
    vio_run ip netns exec "$a" "$bin" tap-tso --ifname vtap0 --guest-ip 10.0.0.2 \
        --peer-ip 10.0.0.3 --peer-mac "$peer_mac" --peer-if veth1 --peer-netns "$b"
}

test_gro() {
    # The sender lives in namespace B; A receives its segments on veth0 (GRO on), forwards
    # them to the tap, and the guest behind the tap sees the kernel's GSO super-frames.
    vio_netns_create tap-gro-a
    local a=$VIO_NETNS
    vio_netns_create tap-gro-b
    local b=$VIO_NETNS
    ns_prepare "$a"
    ns_prepare "$b"
    ip netns exec "$a" sysctl -qw net.ipv4.ip_forward=1
    vio_netns_add_tap vtap0 10.0.0.1/24 "$a"
    vio_netns_add_veth "$a" veth0 10.0.1.1/24 "$b" veth1 10.0.1.2/24
    ip -n "$b" route add default via 10.0.1.1
    ip netns exec "$a" ethtool -K veth0 gro on >/dev/null 2>&1 || true
    vio_run ip netns exec "$a" "$bin" tap-gro --ifname vtap0 --guest-ip 10.0.0.2 \
        --host-ip 10.0.0.1 --sender-netns "$b" --stat-if veth0 --bytes 1048576
}

rc=0
for t in "${tests[@]}"; do
    case $t in
    ping | tso | gro) ;;
    *) echo "net_tap.sh: unknown test '$t'" >&2; exit 2 ;;
    esac
    echo "=== tap $t"
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
    if [[ $st -eq 0 ]]; then echo "=== tap $t: PASS"; else echo "=== tap $t: FAIL ($st)"; rc=1; fi
done
exit $rc
