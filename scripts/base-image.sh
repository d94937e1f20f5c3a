#!/usr/bin/env bash
# Build the images' base without a container registry: a minimal Debian bookworm root made with debootstrap,
# Debian's Python 3.11 installed into it, imported into the local Docker engine as one layer.
# Where a registry is reachable the images need none of this: their default base is the official Python image.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--image NAME] [--mirror URL] [--dry-run]

  --image    the image to make (default: \$BASE_IMAGE or $DEFAULT_BASE_IMAGE)
  --mirror   the Debian mirror debootstrap and apt use (default: \$DEBIAN_MIRROR or $DEFAULT_DEBIAN_MIRROR)
  --dry-run  print every command, run nothing

Needs root (debootstrap, chroot), debootstrap, a Docker daemon, and a reachable Debian mirror.
EOF
}

image="${BASE_IMAGE:-$DEFAULT_BASE_IMAGE}"
mirror="${DEBIAN_MIRROR:-$DEFAULT_DEBIAN_MIRROR}"
while (($#)); do
  case "$1" in
    --image) image="${2:?--image needs a value}"; shift ;;
    --mirror) mirror="${2:?--mirror needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if ((!DRY_RUN)); then
  ((EUID == 0)) || die "${0##*/} needs root (debootstrap and chroot); run it as root, or build with a registry's base (make images BASE_IMAGE=python:3.11.7-slim-bookworm)"
  need debootstrap
  need_docker_daemon
fi

if ((DRY_RUN)); then
  root="${TMPDIR:-/tmp}/wakeline-base.XXXXXX"
else
  root="$(mktemp -d "${TMPDIR:-/tmp}/wakeline-base.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the directory to remove is this one
  trap "rm -rf '$root'" EXIT
fi
# minbase: essential packages and apt only. Then Debian's Python 3.11 with venv (python3-venv brings ensurepip),
# nothing recommended, and no apt lists or caches left in the layer.
run debootstrap --variant=minbase bookworm "$root" "$mirror"
run chroot "$root" apt-get install -y --no-install-recommends python3 python3-venv
run chroot "$root" apt-get clean
run rm -rf "$root/var/lib/apt/lists" "$root/var/cache/apt" "$root/var/log/apt" "$root/tmp" "$root/root/.cache"
run install -d -m 1777 "$root/tmp"
import_line="$(quote_cmd tar -C "$root" --numeric-owner -c .) | $(quote_cmd docker import --change 'CMD ["python3"]' - "$image")"
if ((DRY_RUN)); then
  echo "$import_line"
else
  note "+ $import_line"
  tar -C "$root" --numeric-owner -c . | docker import --change 'CMD ["python3"]' - "$image" >/dev/null
  note "built $image ($(docker image inspect --format '{{.Size}}' "$image") bytes)"
fi
