#!/usr/bin/env bash
# Copy the wakeline images (both by default; FLAVORS=cpu for the cpu one alone) from the local Docker engine into every node of a Kind cluster, so pods start
# them without a registry (their version tags give the pull policy IfNotPresent).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--name CLUSTER] [--registry REGISTRY] [--version VERSION] [--flavors "cpu gpu"] [--dry-run]

  --name      Kind cluster name (default: \$CLUSTER or $DEFAULT_CLUSTER)
  --registry  image registry the images were built for (default: \$REGISTRY or $DEFAULT_REGISTRY)
  --version   image tag (default: the package version in pyproject.toml)
  --flavors   which images (default: \$FLAVORS or "cpu gpu"), as scripts/images.sh built them
  --dry-run   print every command, run nothing
EOF
}

cluster="${CLUSTER:-$DEFAULT_CLUSTER}"
registry="${REGISTRY:-$DEFAULT_REGISTRY}"
version=""
flavors="${FLAVORS:-cpu gpu}"
while (($#)); do
  case "$1" in
    --name) cluster="${2:?--name needs a value}"; shift ;;
    --registry) registry="${2:?--registry needs a value}"; shift ;;
    --version) version="${2:?--version needs a value}"; shift ;;
    --flavors) flavors="${2:?--flavors needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
registry="${registry%/}"
[[ -n "$version" ]] || version="$(package_version)"
check_tag "$version"

need kind
need_docker_daemon
read -r -a flavor_list <<<"$flavors"
for flavor in "${flavor_list[@]}"; do
  [[ "$flavor" == cpu || "$flavor" == gpu ]] || die "unknown flavor '$flavor' (cpu or gpu)"
done
for flavor in "${flavor_list[@]}"; do
  run kind load docker-image --name "$cluster" "$registry/wakeline-$flavor:$version"
done
