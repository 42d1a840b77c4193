#!/usr/bin/env bash
# docs/PROVISIONING.md, "Provisioning and updating the QEMU board", as one script: every
# command of that section in order, from a fresh clone (after `make .venv/.run-stamp` and
# `bash scripts/system-deps.sh`). Usage: scripts/qemu-board-walkthrough.sh [WORK_DIR]
#
# The agent runs on this machine and works on the board's storage: the two slot partitions
# and U-Boot's otaguard.env, copied out of the board's disk image before each agent run and
# back in after it (tests/qemu/machine.py), with the kernel command line the board printed.
set -euo pipefail
cd "$(dirname "$0")/.."
W="$(mkdir -p "${1:-qemu-walkthrough}" && cd "${1:-qemu-walkthrough}" && pwd)"
OTAGUARD="$PWD/.venv/bin/otaguard"
PY="$PWD/.venv/bin/python"
PORT="${PORT:-8443}"
SERVER="https://127.0.0.1:$PORT"
board() { "$PY" tests/qemu/board_io.py "$@"; }   # pull / push / boot the board's storage

# 1. The board: U-Boot, boot.scr, otaguard.env (slot a committed), slot a = rootfs 1.0.0.
scripts/build-qemu-board.sh "$W/board"

# 2. The server (its CA, admin token and online keys are made on first start).
"$OTAGUARD" server --data-dir "$W/server" --port "$PORT" --no-access-log >"$W/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 60); do grep -q "startup complete" "$W/server.log" && break; sleep 1; done
CA="$W/server/tls/ca.pem"                       # the server's generated CA (pinned by devices)
TOKEN="$W/server/admin-token"
api() { curl -sf --cacert "$CA" -H "Authorization: Bearer $(cat "$TOKEN")" "$@"; }

# 3. The maker: keys, repository, release 2.0.0 (the raw ext4 root filesystem, zstd).
export OTAGUARD_KEY_PASSPHRASE=walkthrough-only
for k in root-1 targets-1; do
  "$OTAGUARD" keys generate "$k" --dir "$W/keys" --passphrase-env OTAGUARD_KEY_PASSPHRASE
done
"$OTAGUARD" repo init "$W/repo" --root-key "$W/keys/root-1.pub.json" --root-threshold 1 \
  --targets-key "$W/keys/targets-1.pub.json" --targets-threshold 1 \
  --server "$SERVER" --token-file "$TOKEN" --ca "$CA"
"$OTAGUARD" release sign "$W/repo" --role root --key "$W/keys/root-1.key" \
  --passphrase-env OTAGUARD_KEY_PASSPHRASE
zstd -q -f "$W/board/rootfs-2.0.0.ext4" -o "$W/rootfs-2.0.0.ext4.zst"
"$OTAGUARD" release add "$W/rootfs-2.0.0.ext4.zst" --repo "$W/repo" \
  --name qemu-x86/rootfs-2.0.0.ext4.zst --version 2.0.0 --hardware qemu-x86 --security-version 1
"$OTAGUARD" release sign "$W/repo" --key "$W/keys/targets-1.key" \
  --passphrase-env OTAGUARD_KEY_PASSPHRASE
"$OTAGUARD" repo publish "$W/repo" --server "$SERVER" --token-file "$TOKEN" --ca "$CA"

# 4. The device's files (as a factory image would carry them) and its agent.toml.
D="$W/device"
mkdir -p "$D/etc" "$D/state"
cp "$CA" "$D/etc/ca.pem"
cp "$W/repo/metadata/1.root.json" "$D/etc/root.json"
cp "$W/server/keys/director.pub.json" "$D/etc/director.pub.json"   # the director's public key
cat >"$D/etc/agent.toml" <<TOML
[agent]
device_id = "qemu-0001"
hardware = "qemu-x86"
server_url = "$SERVER"
state_dir = "../state"
ca_file = "ca.pem"
director_key_file = "director.pub.json"
trusted_root_file = "root.json"
client_cert_file = "client.pem"
client_key_file = "client.key"
poll_interval = "10m"

[device]
slots = "block"
slot_a = "../slot_a.img"
slot_b = "../slot_b.img"
boot_env = "uboot"
uboot_env = ["../otaguard.env"]
uboot_env_size = 0x4000
otp_file = "../state/otp.fuses"
cmdline_file = "../cmdline"
TOML

# 5. Provision: keys made on the device, factory slot recorded; register; enroll by token.
board pull "$W/board/disk.img" "$D"
"$OTAGUARD" device provision --config "$D/etc/agent.toml" --boot-slot a --slot-version a=1.0.0 \
  >"$D/manifest.pub.json"
api -X POST "$SERVER/api/v1/devices" -H 'Content-Type: application/json' \
  -d "{\"id\": \"qemu-0001\", \"hardware\": \"qemu-x86\", \"tags\": [\"lab\"], \"manifest_key\": $(cat "$D/manifest.pub.json")}" >/dev/null
( umask 077
  api -X POST "$SERVER/api/v1/devices/qemu-0001/enrollment-token" -H 'Content-Type: application/json' \
    -d '{"ttl_seconds": 600}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])' \
    >"$W/token" )
"$OTAGUARD" device provision --config "$D/etc/agent.toml" --token-file - <"$W/token" >/dev/null
rm "$W/token"

# 6. Boot 1.0.0, check in, deploy 2.0.0, install it into slot b, boot it on trial, confirm.
board boot "$W/board/disk.img" "$D"
"$OTAGUARD" agent run --once --config "$D/etc/agent.toml"
api -X POST "$SERVER/api/v1/deployments" -H 'Content-Type: application/json' \
  -d '{"name": "qemu-2.0.0", "target_name": "qemu-x86/rootfs-2.0.0.ext4.zst", "selector": {"all": true}}'
echo
"$OTAGUARD" agent run --once --config "$D/etc/agent.toml"
board push "$W/board/disk.img" "$D"
board boot "$W/board/disk.img" "$D"            # prints: version=2.0.0 slot=b trial=1
"$OTAGUARD" agent confirm --config "$D/etc/agent.toml"
board push "$W/board/disk.img" "$D"
board boot "$W/board/disk.img" "$D"            # prints: version=2.0.0 slot=b trial=0
"$OTAGUARD" agent run --once --config "$D/etc/agent.toml"
"$OTAGUARD" agent status --config "$D/etc/agent.toml"
api "$SERVER/api/v1/devices/qemu-0001" | "$PY" -c \
  'import json,sys; d=json.load(sys.stdin); print("server:", d["current_version"], d["active_slot"])'
