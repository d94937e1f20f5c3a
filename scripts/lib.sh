# shellcheck shell=bash
# Helpers shared by scripts/images.sh, kind-up.sh and kind-load.sh. Source it, do not run it.
# Every command that changes anything goes through `run`. With --dry-run (DRY_RUN=1) it prints the command,
# one per line, quoted so a shell reads it back unchanged, and runs nothing.

WAKELINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
{
  DEFAULT_REGISTRY="ghcr.io/wakeline" # = components/common/images.py DEFAULT_REGISTRY
  DEFAULT_CLUSTER="wakeline"
  # The images' base where no registry is reachable: made by scripts/base-image.sh (debootstrap), local only.
  DEFAULT_BASE_IMAGE="wakeline-base:bookworm-python3.11"
  DEFAULT_DEBIAN_MIRROR="http://deb.debian.org/debian"
}
DRY_RUN=0

die() {
  echo "error: $*" >&2
  exit 1
}

note() {
  echo "$*" >&2
}

# The command as a shell line: words with only safe characters stay as they are, others are single-quoted.
quote_cmd() {
  local word out=()
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$word")
    else
      out+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

run() {
  if ((DRY_RUN)); then
    quote_cmd "$@"
  else
    note "+ $(quote_cmd "$@")"
    "$@"
  fi
}

# need TOOL...: stop with a clear message when a tool is missing (not checked with --dry-run, which runs nothing).
need() {
  ((DRY_RUN)) && return 0
  local tool hint
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 && continue
    case "$tool" in
      docker) hint="https://docs.docker.com/engine/install/" ;;
      kind) hint="https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
      kubectl) hint="https://kubernetes.io/docs/tasks/tools/" ;;
      *) hint="your package manager" ;;
    esac
    die "$tool is not on PATH; ${0##*/} needs it. Install it ($hint), or pass --dry-run to print the commands without running them."
  done
}

# need_docker_daemon: the docker CLI alone is not enough to build, push or load images.
need_docker_daemon() {
  ((DRY_RUN)) && return 0
  need docker
  docker info >/dev/null 2>&1 ||
    die "docker is installed but cannot reach a Docker daemon (docker info failed); start Docker, or pass --dry-run."
}

# The package version from pyproject.toml: the image tag, and what `wakeline compile` writes into the IR
# (code_version() of the installed package, built from the same pyproject.toml).
package_version() {
  local version
  version="$("${PYTHON:-python3}" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$WAKELINE_ROOT/pyproject.toml")" || die "cannot read [project].version from pyproject.toml with ${PYTHON:-python3} (Python 3.11+ needed)"
  echo "$version"
}

# check_tag VERSION: Docker tags allow [A-Za-z0-9_.-], up to 128 characters, not starting with . or -.
check_tag() {
  [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "version '$1' is not a valid Docker tag"
}
