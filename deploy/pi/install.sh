#!/bin/sh
# Install nattillsyn on a Raspberry Pi (Raspberry Pi OS / Debian bookworm) as a room
# device (edge) or as a care home's gateway, with the distribution's packages and pip.
#
#   sudo deploy/pi/install.sh edge    --api https://nattillsyn.example.org --claim CODE [--ca ca.crt]
#   sudo deploy/pi/install.sh gateway --site SITE [--ca ca.crt]
#
# Options:
#   --from SPEC     what pip installs: a wheel, a checkout folder or a requirement
#                   (default: this checkout). The extra (edge / server) is added for you.
#   --api URL       the central api (https); with --claim the device claims itself
#   --claim CODE    the one-time claim code shown on the admin page when the device was
#                   provisioned; writes /etc/nattillsyn/edge.toml (broker URL and password)
#   --ca FILE       the installation's CA certificate (deploy/certs/nattillsyn-certs ca),
#                   added to the system trust store so mqtts:// and https:// verify against it
#   --site SITE     gateway: the care home's site id
#   --no-apt        skip apt-get (packages already there)
#   --no-start      install and enable, but do not start
#   --root DIR      install into DIR instead of / (packaging and tests: no apt, no systemctl)
#
# Idempotent: re-running upgrades the package and keeps settings. Prints no secret.
set -eu
umask 022
die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "==> $*"; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
role=${1:-}
[ "$role" = edge ] || [ "$role" = gateway ] || die "usage: install.sh edge|gateway [options] (see the header)"
shift
spec=$repo
api=""
code=""
ca=""
site=""
apt=yes
start=yes
root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) spec=$2; shift 2 ;;
        --api) api=$2; shift 2 ;;
        --claim) code=$2; shift 2 ;;
        --ca) ca=$2; shift 2 ;;
        --site) site=$2; shift 2 ;;
        --no-apt) apt=no; shift ;;
        --no-start) start=no; shift ;;
        --root) root=$2; apt=no; start=no; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo): it creates a system user, /opt/nattillsyn and systemd units"
fi
[ -z "$code" ] || [ -n "$api" ] || die "--claim needs --api URL"
[ -z "$ca" ] || [ -f "$ca" ] || die "no such CA file: $ca"
case "$site" in *[!A-Za-z0-9_-]*) die "invalid site id '$site'" ;; esac
[ "$role" != gateway ] || [ -n "$site" ] || die "gateway needs --site SITE"

prefix=$root/opt/nattillsyn
etc=$root/etc/nattillsyn
units=$root/etc/systemd/system
extra=edge
[ "$role" = gateway ] && extra=server

# 1. Distribution packages: Python, venv, CA store; the gateway's site broker.
if [ "$apt" = yes ]; then
    pkgs="python3 python3-venv python3-pip ca-certificates"
    [ "$role" = edge ] && pkgs="$pkgs v4l-utils"
    [ "$role" = gateway ] && pkgs="$pkgs mosquitto"
    say "apt-get install $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# 2. The dedicated account (systemd-sysusers where it exists, else useradd).
mkdir -p "$root/usr/lib/sysusers.d"
install -m 0644 "$repo/deploy/systemd/nattillsyn.sysusers" "$root/usr/lib/sysusers.d/nattillsyn.conf"
if [ -z "$root" ]; then
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers /usr/lib/sysusers.d/nattillsyn.conf
    elif ! id nattillsyn >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/nattillsyn --shell /usr/sbin/nologin nattillsyn
        usermod -a -G video nattillsyn
    fi
fi

# 3. The program: a venv under /opt (pip wheels for NumPy/OpenCV on aarch64 and armv7).
say "installing nattillsyn[$extra] into $prefix/venv"
mkdir -p "$prefix"
if [ ! -x "$prefix/venv/bin/python" ]; then
    python3 -m venv "$prefix/venv"
fi
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
case "$spec" in
    *.whl) target="nattillsyn[$extra] @ file://$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")" ;;
    /*|./*|../*) target="$(cd "$spec" && pwd)[$extra]" ;;
    *) target="$spec[$extra]" ;;
esac
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade "$target"
mkdir -p "$prefix/docs"
for doc in deploy.md scaling.md; do
    [ -f "$repo/docs/$doc" ] && install -m 0644 "$repo/docs/$doc" "$prefix/docs/$doc"
done

# 4. Trust the installation's CA (mqtts:// to the broker, https:// to the api).
if [ -n "$ca" ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    install -m 0644 "$ca" "$root/usr/local/share/ca-certificates/nattillsyn-ca.crt"
    [ -n "$root" ] || update-ca-certificates >/dev/null
fi

# 5. Settings: root-only on disk, handed to the service as a systemd credential.
install -d -m 0700 "$etc"
conf=$etc/$role.toml
if [ "$role" = edge ] && [ -n "$code" ]; then
    say "claiming this device with its code at $api"
    "$prefix/venv/bin/nattillsyn" claim "$code" --api "$api" --write "$conf"
elif [ ! -f "$conf" ]; then
    if [ "$role" = edge ]; then
        cat > "$conf" <<'EOF'
# Edge settings. Normally written by `nattillsyn claim CODE --api URL` (install.sh --claim).
# mqtt_url = "mqtts://dev-SITE-DEVICE:PASSWORD@mqtt.example.org:8883"
# site = "SITE"
# [edge]
# room = "ROOM"
# device = "DEVICE"
# source = "/dev/video0"
EOF
    else
        # The gateway's own account on the site broker: random, hashed as mosquitto_passwd
        # does (PBKDF2-SHA512), never on a command line.
        install -d -m 0750 "$root/etc/mosquitto/nattillsyn"
        local_pw=$("$prefix/venv/bin/python" - "$root/etc/mosquitto/nattillsyn" <<'PY'
import base64, hashlib, os, secrets, sys
d = sys.argv[1]
pw = secrets.token_hex(24)
salt = os.urandom(12)
h = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, 101, 64)
line = "gw-local:$7$101$%s$%s\n" % (base64.b64encode(salt).decode(), base64.b64encode(h).decode())
with open(os.path.join(d, "passwd"), "a") as f:
    f.write(line)
with open(os.path.join(d, "acl"), "a") as f:
    f.write("user gw-local\ntopic readwrite #\n")
print(pw)
PY
)
        cat > "$conf" <<EOF
# Gateway settings: the site's local broker, and the central broker over TLS.
# The gateway's central account: \`nattillsyn mqtt-auth service gw-$site\` on the central side.
site = "$site"
mqtt_url = "mqtt://gw-local:$local_pw@127.0.0.1:1883"

[gateway]
# upstream_url = "mqtts://gw-$site:PASSWORD@mqtt.example.org:8883"
EOF
    fi
    echo "wrote a template $conf: fill it in, then: systemctl restart nattillsyn-$role"
fi
chmod 0600 "$conf"

# 6. The hardened unit.
mkdir -p "$units"
install -m 0644 "$repo/deploy/systemd/nattillsyn-$role.service" "$units/nattillsyn-$role.service"
if [ "$role" = gateway ]; then
    mkdir -p "$root/etc/mosquitto/conf.d"
    # The site broker: the project's queue policy; devices need an account (deny by default).
    # The gateway keeps passwd/acl in /etc/mosquitto/nattillsyn/ in step with the centre.
    install -d -m 0750 "$root/etc/mosquitto/nattillsyn"
    for f in passwd acl; do
        [ -f "$root/etc/mosquitto/nattillsyn/$f" ] || : > "$root/etc/mosquitto/nattillsyn/$f"
    done
    chmod 0640 "$root/etc/mosquitto/nattillsyn/passwd" "$root/etc/mosquitto/nattillsyn/acl"
    if [ -z "$root" ]; then
        chgrp -R mosquitto /etc/mosquitto/nattillsyn
    fi
    if [ ! -f "$root/etc/mosquitto/conf.d/nattillsyn.conf" ]; then
        cat > "$root/etc/mosquitto/conf.d/nattillsyn.conf" <<'EOF'
# The care home's broker for its room devices; the gateway bridges it to the centre.
# Queue policy as the project's deploy/mosquitto/mosquitto.conf.
per_listener_settings false
allow_anonymous false
password_file /etc/mosquitto/nattillsyn/passwd
acl_file /etc/mosquitto/nattillsyn/acl
listener 1883
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 1000
max_packet_size 1048576
persistent_client_expiration 7d
set_tcp_nodelay true
EOF
    fi
fi
if [ -z "$root" ]; then
    systemctl daemon-reload
    systemctl enable "nattillsyn-$role.service" >/dev/null
    if [ "$start" = yes ]; then
        [ "$role" = gateway ] && systemctl restart mosquitto.service
        systemctl restart "nattillsyn-$role.service"
        say "started: systemctl status nattillsyn-$role; journalctl -u nattillsyn-$role -f"
    fi
fi
say "nattillsyn $role installed in $prefix"
