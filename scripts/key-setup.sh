#!/usr/bin/env bash
# Seal the ServiceBay master key as a systemd credential: to the TPM2 when the box has one (or when
# --tpm2 demands it), else to this host's secret. The key file then leaves the disk: the daemon gets
# the key from $CREDENTIALS_DIRECTORY, and `servicebay key status` says "tpm2" or "host secret".
#
#   sudo scripts/key-setup.sh --escrow /media/usb/servicebay-master.key [--tpm2]
#
# --escrow writes one copy of the key to a place you keep OFF this box (a USB stick in the safe,
# the dealer group's vault). Without that copy, a dead TPM or a wiped disk means the data is gone.
# Run it with the daemon stopped. Needs systemd >= 250 (systemd-creds).
set -euo pipefail
keydir=${SERVICEBAY_KEY_DIR:-/var/lib/servicebay-keys}
datadir=${SERVICEBAY_DATA:-/var/lib/servicebay}
cred=/etc/credstore.encrypted/servicebay-master-key
escrow="" want_tpm=0
while [ $# -gt 0 ]; do
  case "$1" in
    --escrow) escrow=$2; shift 2 ;;
    --tpm2) want_tpm=1; shift ;;
    *) echo "usage: $0 --escrow FILE [--tpm2]" >&2; exit 2 ;;
  esac
done
[ -n "$escrow" ] || { echo "key-setup: --escrow FILE is required (a copy kept off this box)" >&2; exit 2; }
command -v systemd-creds >/dev/null || { echo "key-setup: systemd-creds not found (systemd >= 250 needed)" >&2; exit 1; }
if systemctl is-active --quiet servicebay; then echo "key-setup: stop the daemon first (systemctl stop servicebay)" >&2; exit 1; fi

with=host sealing="host secret"
if systemd-creds has-tpm2 >/dev/null 2>&1; then with=tpm2 sealing=tpm2; fi
if [ "$want_tpm" -eq 1 ] && [ "$with" != tpm2 ]; then echo "key-setup: --tpm2 asked, but this box has no usable TPM2" >&2; exit 1; fi

install -d -m 0700 "$keydir" /etc/credstore.encrypted
if [ -f "$keydir/master.key" ]; then
  src="$keydir/master.key"
elif [ -f "$datadir/servicebay.db" ]; then
  echo "key-setup: $datadir holds data but $keydir/master.key is missing; put the key back first" >&2; exit 1
else
  src="$keydir/master.key"
  umask 077; od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' > "$src"; echo >> "$src"
fi
install -m 0600 "$src" "$escrow"
systemd-creds encrypt --name=servicebay-master-key --with-key="$with" "$src" "$cred"
# Prove the credential opens before the file goes.
systemd-creds decrypt --name=servicebay-master-key "$cred" - | cmp -s - "$src" || { echo "key-setup: the sealed credential does not decrypt; key file kept" >&2; exit 1; }
printf '%s\n' "$sealing" > "$keydir/sealing"
shred -u "$src" 2>/dev/null || rm -f "$src"
install -d -m 0755 /etc/systemd/system/servicebay.service.d
cat > /etc/systemd/system/servicebay.service.d/master-key.conf <<CONF
[Service]
LoadCredentialEncrypted=servicebay-master-key:$cred
CONF
systemctl daemon-reload
echo "key-setup: master key sealed ($sealing) in $cred; escrow copy at $escrow; key file removed"
echo "key-setup: start the daemon, then check: servicebay key status"
