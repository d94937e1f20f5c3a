#!/usr/bin/env bash
# Build or push the wakeline images: <registry>/wakeline-cpu:<version> and <registry>/wakeline-gpu:<version>,
# the names components/common/images.py Images.for_version gives the compiled pipeline.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} build|push [--registry REGISTRY] [--version VERSION] [--base IMAGE] [--flavors "cpu gpu"] [--dry-run]

  build       docker build images/<flavor>/Dockerfile (context: the repository root) with no network: every
              wheel comes from wheelhouse/<flavor> (scripts/wheelhouse.sh)
  push        docker push the tags (build them first)
  --registry  image registry (default: \$REGISTRY or $DEFAULT_REGISTRY)
  --version   image tag (default: the package version in pyproject.toml)
  --base      the images' base (default: \$BASE_IMAGE, else the Dockerfiles' own: the official Python image);
              $DEFAULT_BASE_IMAGE is made by scripts/base-image.sh where no registry is reachable
  --flavors   which images (default: \$FLAVORS or "cpu gpu")
  --dry-run   print every command, run nothing
EOF
}

action=""
registry="${REGISTRY:-$DEFAULT_REGISTRY}"
version=""
base="${BASE_IMAGE:-}"
flavors="${FLAVORS:-cpu gpu}"
while (($#)); do
  case "$1" in
    build | push) action="$1" ;;
    --registry) registry="${2:?--registry needs a value}"; shift ;;
    --version) version="${2:?--version needs a value}"; shift ;;
    --base) base="${2:?--base needs a value}"; shift ;;
    --flavors) flavors="${2:?--flavors needs a value}"; shift ;;
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

read -r -a flavor_list <<<"$flavors"
((${#flavor_list[@]})) || die "--flavors is empty"
for flavor in "${flavor_list[@]}"; do
  [[ "$flavor" == cpu || "$flavor" == gpu ]] || die "unknown flavor '$flavor' (cpu or gpu)"
done

need_docker_daemon
cd "$WAKELINE_ROOT"
if [[ "$action" == build && "$base" == "$DEFAULT_BASE_IMAGE" ]] && ((!DRY_RUN)); then
  docker image inspect "$base" >/dev/null 2>&1 ||
    die "base image $base is not in the Docker engine: run \`make base-image\` first (or --base <an image a registry has>)"
fi
# The classic builder: the Debian docker.io engine (20.10) builds with it, and a newer client without the buildx
# plugin has no other. It honours --network=none for every RUN step.
export DOCKER_BUILDKIT=0
for flavor in "${flavor_list[@]}"; do
  image="$registry/wakeline-$flavor:$version"
  case "$action" in
    # --network=none: no RUN step reaches anything; the base image itself is the engine's (or pulled by it).
    build) run docker build --network=none ${base:+--build-arg "BASE_IMAGE=$base"} -f "images/$flavor/Dockerfile" -t "$image" . ;;
    push) run docker push "$image" ;;
  esac
done
