# bench/vhost-user-common.sh — sourced by bench/vhost-user.sh and bench/vhost-user-callgrind.sh.
# Set VU_TAG (the message prefix), repo (the source tree) and daemon (empty: search) first.
# Defines say / skip / peer_version, finds the daemon, and SKIPs (exit 0) without it,
# without dpdk-testpmd or without root.
say() { printf '%s: %s\n' "$VU_TAG" "$*"; }
skip() { say "SKIP: $*"; exit 0; }
peer_version() { dpkg-query -W -f '${Package} ${Version}' dpdk 2>/dev/null || echo "dpdk-testpmd (version unknown)"; }

if [[ -z "$daemon" ]]; then
    for d in "$repo"/build*/examples/vio-vhost-user-net; do
        [[ -x "$d" ]] && { daemon=$d; break; }
    done
fi
[[ -n "$daemon" && -x "$daemon" ]] || skip "no vio-vhost-user-net binary (build it, or pass --daemon)"
command -v dpdk-testpmd >/dev/null 2>&1 || skip "dpdk-testpmd not installed"
[[ $(id -u) -eq 0 ]] || skip "needs root (testpmd)"
