#!/usr/bin/env bash
# Install Triton's perf_analyzer into var/tools/perf_analyzer/ (git-ignored), for
# tests/http/test_perf_analyzer.py and bench/v2.py.
#
# The binary ships inside the tritonclient 2.40.0 wheel (the newer wheels and the
# separate perf-analyzer package do not carry it), and it links the CUDA runtime even
# with no GPU, which the nvidia-cuda-runtime-cu12 wheel provides. Both wheels are
# fetched with pip (`pip download`, so the venv keeps its own tritonclient), checked
# against the hashes below, and only the binary and libcudart are unpacked:
#
#   var/tools/perf_analyzer/perf_analyzer       wrapper: sets LD_LIBRARY_PATH, runs bin/
#   var/tools/perf_analyzer/bin/perf_analyzer   the binary
#   var/tools/perf_analyzer/lib/libcudart.so.12
#   var/tools/perf_analyzer/wheels/             the downloaded wheels (a cache)
#
# It also needs libb64 from the system: Debian's package libb64-0d.
#
# Idempotent: an installed copy that runs is left alone, with no network access; with
# the wheels already in wheels/ nothing is downloaded either. pip's own settings
# (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ...) apply to the download.
#
#   bash tools/install_perf_analyzer.sh [--force]
#   PIP="python3 -m pip" bash tools/install_perf_analyzer.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TRITONCLIENT_VERSION=2.40.0
CUDART_VERSION=12.3.101
DEST=${PERF_ANALYZER_HOME:-var/tools/perf_analyzer}
WRAPPER=$DEST/perf_analyzer
STAMP=$DEST/.installed-$TRITONCLIENT_VERSION-$CUDART_VERSION

fail() { echo "install_perf_analyzer: $*" >&2; exit 1; }

check_runs() {
  local output
  if ! output=$("$WRAPPER" --version 2>&1); then
    if grep -q 'libb64' <<<"$output"; then
      fail "perf_analyzer needs libb64: install Debian's package libb64-0d (apt-get install -y libb64-0d)"
    fi
    fail "perf_analyzer does not run: $output"
  fi
}

if [[ ${1:-} != --force && -f $STAMP && -x $DEST/bin/perf_analyzer && -x $WRAPPER ]]; then
  check_runs
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PLATFORM=manylinux1_x86_64 ;;
  *) fail "perf_analyzer is only packaged for Linux x86_64 here (this is $(uname -s) $(uname -m))" ;;
esac
TRITON_WHEEL=tritonclient-$TRITONCLIENT_VERSION-py3-none-$PLATFORM.whl
CUDART_WHEEL=nvidia_cuda_runtime_cu12-$CUDART_VERSION-py3-none-$PLATFORM.whl
declare -A SHA256=(
  [$TRITON_WHEEL]=f270fdb61560894c20b6e7fcd4fc1bf837e51022092692b63a38692042fa18b8
  [$CUDART_WHEEL]=04604679ddca6acb96c76a7a9306282cddc16981f92e148e2dfe227078883cda
)

if [[ -z ${PIP:-} ]]; then
  if [[ -x .venv/bin/pip ]]; then PIP=.venv/bin/pip; else PIP="python3 -m pip"; fi
fi

mkdir -p "$DEST/wheels"
verified() { [[ -f $DEST/wheels/$1 ]] && echo "${SHA256[$1]}  $DEST/wheels/$1" | sha256sum --check --status; }
fetch() {  # fetch WHEEL REQUIREMENT
  verified "$1" && return 0
  rm -f "$DEST/wheels/$1"
  $PIP download --quiet --no-deps --only-binary=:all: --platform "$PLATFORM" --dest "$DEST/wheels" "$2" \
    || fail "could not download $2 with pip"
  verified "$1" || fail "$1: missing or sha256 mismatch after download"
}
fetch "$TRITON_WHEEL" "tritonclient==$TRITONCLIENT_VERSION"
fetch "$CUDART_WHEEL" "nvidia-cuda-runtime-cu12==$CUDART_VERSION"

# unpack just the two files, into a scratch folder, then move them into place
scratch=$(mktemp -d "$DEST/.unpack.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
python3 - "$DEST/wheels/$TRITON_WHEEL" "$DEST/wheels/$CUDART_WHEEL" "$scratch" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

triton, cudart, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
for wheel, suffix, target in ((triton, "/data/bin/perf_analyzer", "perf_analyzer"), (cudart, "/lib/libcudart.so.12", "libcudart.so.12")):
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            sys.exit(f"{wheel}: expected one *{suffix}, found {names}")
        with archive.open(names[0]) as source, open(out / target, "wb") as sink:
            shutil.copyfileobj(source, sink)
PY
mkdir -p "$DEST/bin" "$DEST/lib"
chmod 0755 "$scratch/perf_analyzer"
mv -f "$scratch/perf_analyzer" "$DEST/bin/perf_analyzer"
mv -f "$scratch/libcudart.so.12" "$DEST/lib/libcudart.so.12"
cat >"$WRAPPER" <<'SH'
#!/bin/sh
# Triton perf_analyzer (from the tritonclient 2.40.0 wheel) with its bundled CUDA runtime.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
SH
chmod 0755 "$WRAPPER"
rm -f "$DEST"/.installed-*
touch "$STAMP"
check_runs
echo "perf_analyzer $TRITONCLIENT_VERSION installed: $WRAPPER"
