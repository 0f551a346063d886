#!/usr/bin/env bash
# fetch-kernel.sh [CACHE_DIR]
#
# Fetch Debian's current linux-image-amd64 kernel for TCG test guests and keep,
# per kernel package, in CACHE_DIR/<package>/:
#   vmlinux      uncompressed ELF (QEMU boots it through its PVH entry; faster
#                under TCG than the bzImage)
#   modules/     the package's lib/modules/<kver> tree
#   kver         the kernel release string (<kver>)
# CACHE_DIR defaults to ${VIO_GUEST_CACHE:-/var/cache/libvirtio-guest}.
#
# On success prints, on stdout, shell-style assignments (eval-able):
#   VIO_KERNEL_PKG=... VIO_KVER=... VIO_VMLINUX=... VIO_MODULES=...
# Progress and errors go to stderr. Exit status non-zero when anything is
# missing. Idempotent: a cached kernel is reused without touching the network.
# Safe to run concurrently (flock on CACHE_DIR/.lock).
set -euo pipefail

die() { printf 'fetch-kernel: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'fetch-kernel: %s\n' "$*" >&2; }

cache=${1:-${VIO_GUEST_CACHE:-/var/cache/libvirtio-guest}}

for tool in apt-cache apt-get dpkg-deb xz grep flock; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done

mkdir -p "$cache" || die "cannot create cache dir '$cache'"
cache=$(cd "$cache" && pwd -P)

# Resolve the concrete kernel package behind the linux-image-amd64 metapackage.
resolve_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1
}

# Refresh stale or missing package lists once (root only), then retry.
updated=0
apt_update() {
    [[ $updated -eq 0 && $(id -u) -eq 0 ]] || return 1
    updated=1
    log "running apt-get update"
    apt-get -q update >&2 || { log "warning: apt-get update failed"; return 1; }
}

pkg=$(resolve_pkg || true)
if [[ -z "$pkg" ]] && apt_update; then
    pkg=$(resolve_pkg || true)
fi
if [[ -z "$pkg" ]]; then
    # Offline / no package lists: fall back to a single cached kernel if any.
    mapfile -t cached < <(find "$cache" -mindepth 2 -maxdepth 2 -name .complete -printf '%h\n' 2>/dev/null | sort)
    if [[ ${#cached[@]} -ge 1 ]]; then
        pkg=$(basename "${cached[-1]}")
        log "warning: 'apt-cache depends linux-image-amd64' gave no kernel package; using cached $pkg"
    else
        die "'apt-cache depends linux-image-amd64' resolved no linux-image-<version> package (run 'apt-get update'?) and nothing is cached in $cache"
    fi
fi

dest="$cache/$pkg"

print_paths() {
    local kver
    kver=$(cat "$dest/kver")
    printf 'VIO_KERNEL_PKG=%q\n' "$pkg"
    printf 'VIO_KVER=%q\n' "$kver"
    printf 'VIO_VMLINUX=%q\n' "$dest/vmlinux"
    printf 'VIO_MODULES=%q\n' "$dest/modules"
}

check_complete() {
    [[ -f "$dest/.complete" && -s "$dest/vmlinux" && -s "$dest/kver" && -d "$dest/modules/kernel" ]]
}

if check_complete; then
    print_paths
    exit 0
fi

exec 9>"$cache/.lock"
flock 9
# Another process may have finished while we waited for the lock.
if check_complete; then
    print_paths
    exit 0
fi

log "preparing $pkg in $dest"
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

debdir="$cache/debs"
mkdir -p "$debdir"
deb=$(find "$debdir" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
if [[ -z "$deb" ]]; then
    log "apt-get download $pkg"
    # apt-get download writes into the cwd; run it in a subshell there.
    # (_apt cannot write into root-only dirs: download as root without sandbox.)
    dl_ok=0
    (cd "$work" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2) && dl_ok=1
    if [[ $dl_ok -eq 0 ]] && apt_update; then
        # The lists may now name a newer kernel package.
        pkg=$(resolve_pkg || true)
        [[ -n "$pkg" ]] || die "no linux-image-<version> package after apt-get update"
        dest="$cache/$pkg"
        if check_complete; then
            print_paths
            exit 0
        fi
        (cd "$work" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2) && dl_ok=1
    fi
    [[ $dl_ok -eq 1 ]] || die "apt-get download $pkg failed (no mirror access? stale lists: run 'apt-get update')"
    dl=$(find "$work" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
    [[ -n "$dl" ]] || die "apt-get download $pkg produced no .deb"
    mv "$dl" "$debdir/"
    deb="$debdir/$(basename "$dl")"
fi

log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/root" || die "dpkg-deb -x $deb failed"

shopt -s nullglob
vmlinuz_list=("$work"/root/boot/vmlinuz-*)
[[ ${#vmlinuz_list[@]} -eq 1 ]] || die "expected exactly one boot/vmlinuz-* in $pkg, found ${#vmlinuz_list[@]}"
vmlinuz=${vmlinuz_list[0]}
kver=${vmlinuz##*/vmlinuz-}

moddir=""
for d in "$work/root/lib/modules/$kver" "$work/root/usr/lib/modules/$kver"; do
    [[ -d "$d/kernel" ]] && { moddir=$d; break; }
done
[[ -n "$moddir" ]] || die "no lib/modules/$kver/kernel in $pkg"

# The bzImage wraps an xz-compressed ELF: find the xz stream magic and unpack it.
off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -n 1 | cut -d: -f1 || true)
[[ -n "$off" ]] || die "no xz stream in $vmlinuz (kernel not xz-compressed? need another decompressor)"
# (xz stops after the first stream, so tail may die of SIGPIPE: under pipefail
# that would fail the pipeline; feed xz through a process substitution instead.)
xz -dc --single-stream < <(tail -c +"$((off + 1))" "$vmlinuz" 2>/dev/null) > "$work/vmlinux" ||
    die "xz decompression of $vmlinuz at offset $off failed"
[[ "$(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ')" == '177ELF' ]] ||
    die "decompressed kernel is not an ELF file"

rm -rf "$dest"
mkdir -p "$dest"
mv "$work/vmlinux" "$dest/vmlinux"
mv "$moddir" "$dest/modules"
cp "$vmlinuz" "$dest/vmlinuz"
for f in "$work"/root/boot/config-"$kver" "$work"/root/boot/System.map-"$kver"; do
    [[ -f "$f" ]] && cp "$f" "$dest/"
done
printf '%s\n' "$kver" > "$dest/kver"
touch "$dest/.complete"
log "done: $pkg ($kver)"
print_paths
