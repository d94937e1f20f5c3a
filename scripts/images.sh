#!/usr/bin/env bash
# Build or push the wakeline images: <registry>/wakeline-cpu:<version> and <registry>/wakeline-gpu:<version>,
# the names components/common/images.py Images.for_version gives the compiled pipeline.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} build|push [--registry REGISTRY] [--version VERSION] [--dry-run]

  build       docker build images/cpu/Dockerfile and images/gpu/Dockerfile (context: the repository root)
  push        docker push both tags (build them first)
  --registry  image registry (default: \$REGISTRY or $DEFAULT_REGISTRY)
  --version   image tag (default: the package version in pyproject.toml)
  --dry-run   print every command, run nothing
EOF
}

action=""
registry="${REGISTRY:-$DEFAULT_REGISTRY}"
version=""
while (($#)); do
  case "$1" in
    build | push) action="$1" ;;
    --registry) registry="${2:?--registry needs a value}"; shift ;;
    --version) version="${2:?--version needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ -n "$action" ]] || { usage >&2; die "say build or push"; }
registry="${registry%/}"
[[ -n "$version" ]] || version="$(package_version)"
check_tag "$version"

need_docker_daemon
cd "$WAKELINE_ROOT"
for flavor in cpu gpu; do
  image="$registry/wakeline-$flavor:$version"
  case "$action" in
    build) run docker build -f "images/$flavor/Dockerfile" -t "$image" . ;;
    push) run docker push "$image" ;;
  esac
done
