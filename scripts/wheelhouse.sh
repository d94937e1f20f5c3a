#!/usr/bin/env bash
# Fill a wheelhouse from requirements.lock, so that the images build with no network at all
# (docker build --network=none; pip install --no-index --find-links). This is the one step that needs an index.
#
#   cpu  every line of the lock, plus pip and the build backend (setuptools) that `pip install -e` needs
#   gpu  the same with tensorflow_cpu swapped for tensorflow[and-cuda] (its nvidia-*-cu12 wheels: several GB)
#
# The wheels are for linux x86_64, CPython 3.11: pip downloads the published wheel where there is one and builds
# the rest (`pip wheel`), so this must run on Linux x86_64 with Python 3.11 (the images' base is bookworm; so is
# a build host's glibc, or older).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} cpu|gpu [--dest DIR] [--dry-run]

  cpu|gpu    which image's wheels
  --dest     the wheelhouse (default: wheelhouse/<flavor> in the repository)
  --dry-run  print every command, run nothing
EOF
}

flavor=""
dest=""
while (($#)); do
  case "$1" in
    cpu | gpu) flavor="$1" ;;
    --dest) dest="${2:?--dest needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ -n "$flavor" ]] || { usage >&2; die "say cpu or gpu"; }
cd "$WAKELINE_ROOT"
dest="${dest:-wheelhouse/$flavor}"
python="${PYTHON:-python3}"

if ((!DRY_RUN)); then
  "$python" -c 'import sys, platform; sys.exit(0 if sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64" else "the wheelhouse is for linux x86_64 CPython 3.11; this is " + sys.platform + " " + platform.machine() + " Python " + sys.version.split()[0])' ||
    die "run ${0##*/} with PYTHON=<a Linux x86_64 Python 3.11>"
fi

lock="requirements.lock"
if [[ "$flavor" == gpu ]]; then
  lock="$dest/requirements-gpu.lock"
  run mkdir -p "$dest"
  if ((DRY_RUN)); then
    quote_cmd sed 's/^tensorflow[-_]cpu==/tensorflow[and-cuda]==/' requirements.lock '>' "$lock"
  else
    sed 's/^tensorflow[-_]cpu==/tensorflow[and-cuda]==/' requirements.lock >"$lock"
    grep -q '^tensorflow\[and-cuda\]==' "$lock" || die "requirements.lock has no tensorflow_cpu line to swap"
  fi
fi
# --no-deps for the cpu lock: it is complete (pip freeze), so nothing is resolved. The gpu lock is not (the nvidia
# wheels are TensorFlow's), so pip resolves those within TensorFlow's bounds; the image build resolves the same
# set from the wheelhouse alone.
run "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$dest" \
  $([[ "$flavor" == cpu ]] && echo --no-deps) -r "$lock" -r images/build-tools.txt
run touch "$dest/.complete" # what `make images` checks: newer than the lock, or the wheelhouse is stale
if ((!DRY_RUN)); then
  note "wheelhouse $dest: $(find "$dest" -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1)"
fi
