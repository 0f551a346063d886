#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# backend_netns.sh <backend_netns binary> <test>
#
# Runs one backend integration test inside its own, freshly created network
# namespace and deletes the namespace on every exit path (including signals).
# Exit 77 (CTest SKIP) with a reason when the test cannot run here.
set -u

bin=${1:?usage: backend_netns.sh <binary> <test>}
test=${2:?usage: backend_netns.sh <binary> <test>}

skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, tun, AF_PACKET)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null 2>&1 || skip "no ip(8) (iproute2)"
[ -x "$bin" ] || { echo "FAIL: $bin is not executable"; exit 1; }

# Namespaces left by runs that were SIGKILLed (a CTest timeout) cannot clean up after
# themselves: remove those whose owning shell is gone. Names: vio-be-<test>-<pid>-<rand>.
for old in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vio-be-'); do
    owner=${old%-*}
    owner=${owner##*-}
    case $owner in
    '' | *[!0-9]*) continue ;;
    esac
    kill -0 "$owner" 2>/dev/null || ip netns del "$old" 2>/dev/null || true
done

ns="vio-be-${test}-$$-${RANDOM}"
ip netns add "$ns" 2>/dev/null || skip "cannot create a network namespace (ip netns add)"
child=
cleanup() {
    [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
    # deleting the namespace removes every interface the test created in it
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

nsexec() { ip netns exec "$ns" "$@"; }

# No IPv6 autoconfiguration chatter: the tests count every frame on both ends.
nsexec sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 ||
    skip "cannot configure sysctls inside the namespace"
nsexec ip link set lo up

# In the background, so a signal to this script is handled at once (bash runs traps only
# between commands, and wait returns early on a trapped signal).
# (ip netns exec execs the program, so $child is the test program itself.)
ip netns exec "$ns" "$bin" "$test" &
child=$!
wait "$child"
rc=$?
child=
exit "$rc"
