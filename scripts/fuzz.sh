#!/usr/bin/env bash
# Fuzz the photo intake path (tests/fuzz: intake check → bounded decode → letterbox preprocessing).
#   ./scripts/fuzz.sh [SECONDS]     default 300; crashes are written to tests/fuzz/artifacts/
# Needs the nightly toolchain (libFuzzer instrumentation) and cargo-fuzz (installed when missing).
# Not part of ./scripts/test.sh: a fuzz run is open-ended; run it before a release and after
# touching src/media.rs or src/vision/preprocess.rs.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$SB_ROOT"
secs=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Its own target dir: instrumented builds must not evict the release artifacts.
export CARGO_TARGET_DIR="$SERVICEBAY_CACHE/fuzz-target"
corpus=tests/fuzz/corpus/decode_preprocess
mkdir -p "$corpus"
# Seeds: the test photos and tiny images of each accepted format.
for f in models/bus.jpg models/zidane.jpg; do [ -f "$f" ] && cp -n "$f" "$corpus/" || true; done
python3 - "$corpus" <<'PY'
import base64, sys, os
d = sys.argv[1]
seeds = {
  "1x1.png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "1x1.webp": "UklGRiQAAABXRUJQVlA4IBgAAAAwAQCdASoBAAEAAwA0JaQAA3AA/vuUAAA=",
}
for n, b in seeds.items():
    p = os.path.join(d, n)
    if not os.path.exists(p):
        open(p, "wb").write(base64.b64decode(b))
PY
cargo +nightly fuzz run --fuzz-dir tests/fuzz decode_preprocess "$corpus" -- \
  -max_total_time="$secs" -rss_limit_mb=4096 -max_len=4194304 -timeout=20 -print_final_stats=1
