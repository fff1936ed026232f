#!/usr/bin/env bash
# Builds the molecule hosts' image without a registry: a Debian 12 minbase made with debootstrap
# from the Debian mirror apt already uses, with python3, git, ca-certificates and sudo, and a git
# wrapper that records every command line (shared/git_argv_recorder.py). Skipped when the image exists.
# Usage: build-image.sh [IMAGE]   (default localhost/codeferry-molecule-debian:12)
# Environment: DEBIAN_MIRROR overrides the mirror; CONTAINERS_CONF as for every podman call.
set -euo pipefail

image=${1:-localhost/codeferry-molecule-debian:12}
here=$(cd "$(dirname "$0")" && pwd)

if podman image exists "$image"; then
  echo "image $image exists; not rebuilding (podman rmi $image to rebuild)"
  exit 0
fi

# The first bookworm "deb" source of apt's own configuration (deb822 or one-line format).
apt_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk 'BEGIN { RS = "" }
         /(^|\n)Types:[^\n]*(^|[ \t])deb([ \t]|\n|$)/ && /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ {
           if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { uri = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", uri); print uri; exit }
         }' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    sed -e 's/\[[^]]*\]//' "$file" | awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }'
  done
}

mirror=${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/codeferry-molecule-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

start=$SECONDS
echo "debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,git,ca-certificates,sudo \
  bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log"; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# The recorder goes first on PATH; its log is writable by every user, since checkouts run git as
# their owner. Package caches are dropped to keep the image small.
{ echo '#!/usr/bin/python3 -I'; cat "$here/shared/git_argv_recorder.py"; } > "$rootfs/usr/local/bin/git"
chmod 0755 "$rootfs/usr/local/bin/git"
install -m 0666 /dev/null "$rootfs/var/log/git-argv.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["sleep", "infinity"]' \
  - "$image" > /dev/null
echo "built $image in $((SECONDS - start)) s"
