# Shared environment for ServiceBay's scripts (sourced, not run).
# Heavy caches live outside the clone so a fresh clone on the same machine rebuilds nothing:
#   cargo target dir, downloaded wheels and verified models, the ONNX Runtime reference venv.
export SERVICEBAY_CACHE=${SERVICEBAY_CACHE:-$HOME/.cache/servicebay}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SERVICEBAY_CACHE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Where a non-systemd dev/test install keeps its config and data (systemd uses /etc + /var/lib).
export SERVICEBAY_HOME=${SERVICEBAY_HOME:-$HOME/.local/share/servicebay}
SB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SB_ROOT
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "servicebay: need root for: $*  (run as root or install sudo)" >&2; return 1; fi
}
