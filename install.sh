#!/bin/sh
# Install store-edge on a Debian/Ubuntu store PC from this checkout.
#
#   sudo ./install.sh                     # everything, then start the service
#   sudo ./install.sh --no-start          # install, but do not enable/start the service yet
#   ./install.sh --root /tmp/r --no-apt   # a scratch tree (tests): no apt, no useradd, no systemctl
#
# Safe to run again (an update of the checkout, or a repair): files are replaced only when they
# differ, the config in /etc/store-edge is never overwritten, the user and folders are kept.
# What each step does and why: systemd/README.md.
set -eu

SERVICE_USER=store-edge
SUPPLEMENTARY_GROUPS="dialout lp plugdev video input"   # as SupplementaryGroups= in the unit
STATE_DIR=/var/lib/store-edge
CONFIG_DIR=/etc/store-edge
UNIT_DIR=/etc/systemd/system
RULES_DIR=/etc/udev/rules.d
BIN_LINK=/usr/local/bin/store-edge
DEFAULT_PREFIX=/opt/store-edge
# Debian packages. The Makefile's APT_PACKAGES, split: python3-pip is not needed (python3-venv brings
# pip into the venv); the build packages compile evdev (HID scanners), which has no wheel, and stay
# installed so that a later update of store-edge can build it again.
RUNTIME_PACKAGES="python3 python3-venv libusb-1.0-0 libzbar0 fonts-wqy-microhei"
BUILD_PACKAGES="python3-dev gcc linux-libc-dev"

PREFIX=$DEFAULT_PREFIX
ROOT=
DO_APT=1
DO_START=1
VENV_FROM=
SKIP_VENV=0
PYTHON=python3

usage() {
    cat <<EOF
usage: install.sh [options]

  --prefix DIR       where the program's venv goes (default $DEFAULT_PREFIX; the venv is DIR/venv)
  --root DIR         install into DIR as if it were / (tests, images): no apt, no useradd (the user is
                     written to DIR/etc/passwd and DIR/etc/group), no chown, no systemctl/udevadm
  --no-apt           do not install Debian packages
  --no-start         install and reload, but do not enable or start the service
  --venv-from PATH   use the existing venv PATH (symlinked as PREFIX/venv) instead of building one
  --skip-venv        do not create or update the venv at all
  --python PYTHON    the interpreter that creates the venv (default python3; 3.11 or newer)
  -h, --help         this text
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "  $*"; }
step() { echo "== $*"; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift ;;
        --prefix=*) PREFIX=${1#*=} ;;
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#*=} ;;
        --no-apt) DO_APT=0 ;;
        --no-start) DO_START=0 ;;
        --venv-from) [ $# -ge 2 ] || die "--venv-from needs a venv folder"; VENV_FROM=$2; shift ;;
        --venv-from=*) VENV_FROM=${1#*=} ;;
        --skip-venv) SKIP_VENV=1 ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON=$2; shift ;;
        --python=*) PYTHON=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

case $PREFIX in /*) ;; *) die "--prefix must be an absolute path (got $PREFIX)" ;; esac
PREFIX=${PREFIX%/}
SRC=$(cd "$(dirname "$0")" && pwd)
[ -f "$SRC/pyproject.toml" ] && [ -f "$SRC/systemd/store-edge.service" ] || die "run install.sh from a store-edge checkout"

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    R=$(cd "$ROOT" && pwd)
    [ "$R" != / ] || die "--root / is the real system: leave --root out instead"
    DO_APT=0
    echo "installing store-edge into $R (a scratch root: no apt, no useradd, no chown, no systemctl)"
else
    R=
    [ "$(id -u)" = 0 ] || die "run as root: sudo $0 $*"
    echo "installing store-edge from $SRC"
fi
VENV=$PREFIX/venv

CHANGED=0   # 1 once anything on disk changed (the service is then restarted if it runs)

# install_file SRC DEST MODE: copy only when the content or mode differs; says what happened.
install_file() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        if [ "$(stat -c %a "$2")" = "${3#0}" ]; then
            say "unchanged   $2"
            return 0
        fi
    fi
    if [ -f "$2" ]; then what=updated; else what=installed; fi
    mkdir -p "$(dirname "$2")"
    tmp="$2.tmp.$$"
    cp "$1" "$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$2"
    say "$what $2"
    CHANGED=1
}

# ---- 1. Debian packages --------------------------------------------------------------------------
step "Debian packages"
if [ "$DO_APT" = 1 ]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script is for Debian/Ubuntu (use --no-apt and install the packages yourself)"
    missing=
    for p in $RUNTIME_PACKAGES $BUILD_PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        say "installing:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
        CHANGED=1
    else
        say "all present: $RUNTIME_PACKAGES $BUILD_PACKAGES"
    fi
else
    say "skipped (--no-apt or --root); needed: $RUNTIME_PACKAGES; to build evdev: $BUILD_PACKAGES"
fi

# ---- 2. the system user ----------------------------------------------------------------------------
step "user $SERVICE_USER"
if [ -z "$R" ]; then
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "exists"
    else
        nologin=/usr/sbin/nologin; [ -x $nologin ] || nologin=/bin/false
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell $nologin "$SERVICE_USER"
        say "created (system user, no login shell, home $STATE_DIR)"
        CHANGED=1
    fi
    current=" $(id -nG "$SERVICE_USER") "
    for g in $SUPPLEMENTARY_GROUPS; do
        if ! getent group "$g" >/dev/null; then
            say "group $g does not exist on this system: skipped (see systemd/README.md, SupplementaryGroups=)"
        elif case $current in *" $g "*) true ;; *) false ;; esac; then
            :
        else
            usermod -aG "$g" "$SERVICE_USER"
            say "added to group $g"
            CHANGED=1
        fi
    done
    say "groups: $(id -nG "$SERVICE_USER")"
else
    # a scratch root: passwd/group entries in DIR/etc, so the tree shows what a real install makes
    mkdir -p "$R/etc"
    touch "$R/etc/passwd" "$R/etc/group"
    if grep -q "^$SERVICE_USER:" "$R/etc/passwd"; then
        say "exists in $R/etc/passwd"
    else
        echo "$SERVICE_USER:x:999:999:store-edge daemon:$STATE_DIR:/usr/sbin/nologin" >>"$R/etc/passwd"
        say "written to $R/etc/passwd (no real useradd under --root)"
        CHANGED=1
    fi
    grep -q "^$SERVICE_USER:" "$R/etc/group" || { echo "$SERVICE_USER:x:999:" >>"$R/etc/group"; CHANGED=1; }
    for g in $SUPPLEMENTARY_GROUPS; do
        line=$(grep "^$g:" "$R/etc/group" || true)
        if [ -z "$line" ]; then
            echo "$g:x::$SERVICE_USER" >>"$R/etc/group"
            CHANGED=1
        else
            case ",${line##*:}," in
                *",$SERVICE_USER,"*) ;;
                *) sed -i "s/^\($g:.*[^:]\)\$/\1,$SERVICE_USER/; s/^\($g:[^:]*:[^:]*:\)\$/\1$SERVICE_USER/" "$R/etc/group"
                   CHANGED=1 ;;
            esac
        fi
    done
    say "groups (in $R/etc/group): $SUPPLEMENTARY_GROUPS"
fi

# chown_to OWNER PATH: only on the real system (the user does not exist on the host under --root)
chown_to() {
    if [ -z "$R" ]; then chown "$1" "$2"; fi
}

# ---- 3. the program: a venv under the prefix -------------------------------------------------------
step "program in $VENV"
if [ "$SKIP_VENV" = 1 ]; then
    say "skipped (--skip-venv)"
elif [ -n "$VENV_FROM" ]; then
    [ -x "$VENV_FROM/bin/python" ] || die "--venv-from $VENV_FROM: no bin/python there"
    VENV_FROM=$(cd "$VENV_FROM" && pwd)
    mkdir -p "$R$PREFIX"
    if [ -L "$R$VENV" ] && [ "$(readlink "$R$VENV")" = "$VENV_FROM" ]; then
        say "unchanged   $R$VENV -> $VENV_FROM"
    else
        [ ! -e "$R$VENV" ] || [ -L "$R$VENV" ] || die "$R$VENV exists and is not a symlink: remove it or drop --venv-from"
        ln -sfn "$VENV_FROM" "$R$VENV"
        say "linked $R$VENV -> $VENV_FROM"
        CHANGED=1
    fi
else
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "$PYTHON is missing or older than 3.11 (store-edge needs 3.11+)"
    mkdir -p "$R$PREFIX"
    if [ ! -x "$R$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$R$VENV"
        say "created $R$VENV"
    fi
    # not editable: the service must not depend on this checkout staying where it is
    had_build=0; [ ! -e "$SRC/build" ] || had_build=1
    "$R$VENV/bin/python" -m pip install -q --disable-pip-version-check ${PIP_OPTS:-} "$SRC"
    [ "$had_build" = 1 ] || rm -rf "$SRC/build"   # setuptools' in-tree build leftovers
    say "installed $("$R$VENV/bin/python" -m pip show store-edge 2>/dev/null | sed -n 's/^Version: /store-edge /p') from $SRC"
    CHANGED=1
fi
if [ -L "$R$BIN_LINK" ] && [ "$(readlink "$R$BIN_LINK")" = "$VENV/bin/store-edge" ]; then
    say "unchanged   $R$BIN_LINK -> $VENV/bin/store-edge"
else
    mkdir -p "$(dirname "$R$BIN_LINK")"
    ln -sfn "$VENV/bin/store-edge" "$R$BIN_LINK"
    say "linked $R$BIN_LINK -> $VENV/bin/store-edge"
    CHANGED=1
fi

# ---- 4. the configuration (never overwritten) ----------------------------------------------------
step "configuration $CONFIG_DIR/config.toml"
mkdir -p "$R$CONFIG_DIR"
chmod 0755 "$R$CONFIG_DIR"
CONFIG=$R$CONFIG_DIR/config.toml
if [ -e "$CONFIG" ]; then
    say "kept the existing $CONFIG (never overwritten)"
    grep -Eq "^[[:space:]]*data_dir[[:space:]]*=[[:space:]]*\"$STATE_DIR/?\"" "$CONFIG" \
        || say "WARNING: its [store] data_dir is not \"$STATE_DIR\": the service can only write there"
else
    tmp="$CONFIG.tmp.$$"
    # data_dir = "var" would be /etc/store-edge/var: read-only under ProtectSystem=strict
    sed -E "s|^([[:space:]]*data_dir[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$STATE_DIR\"|" "$SRC/config.toml" >"$tmp"
    grep -q "^data_dir = \"$STATE_DIR\"" "$tmp" || { rm -f "$tmp"; die "could not set data_dir in the example config.toml"; }
    chmod 0640 "$tmp"
    chown_to "root:$SERVICE_USER" "$tmp"
    mv -f "$tmp" "$CONFIG"
    say "installed $CONFIG (from the example, data_dir = \"$STATE_DIR\"; root:$SERVICE_USER 0640)"
    CHANGED=1
fi

# ---- 5. the state folder ---------------------------------------------------------------------------
step "data folder $STATE_DIR"
if [ -d "$R$STATE_DIR" ]; then say "exists"; else mkdir -p "$R$STATE_DIR"; say "created"; CHANGED=1; fi
chmod 0750 "$R$STATE_DIR"                 # StateDirectoryMode=0750
chown_to "$SERVICE_USER:$SERVICE_USER" "$R$STATE_DIR"
if [ -n "$R" ]; then say "mode 0750 (owner $SERVICE_USER is set by a real install / systemd's StateDirectory=)"; else say "owner $SERVICE_USER, mode 0750"; fi

# ---- 6. the unit and the udev rules ----------------------------------------------------------------
step "systemd unit and udev rules"
UNIT_SRC=$SRC/systemd/store-edge.service
if [ "$PREFIX" != "$DEFAULT_PREFIX" ]; then
    UNIT_SRC=$(mktemp)
    trap 'rm -f "$UNIT_SRC"' EXIT
    sed "s|^ExecStart=$DEFAULT_PREFIX/venv/|ExecStart=$VENV/|" "$SRC/systemd/store-edge.service" >"$UNIT_SRC"
fi
install_file "$UNIT_SRC" "$R$UNIT_DIR/store-edge.service" 0644
install_file "$SRC/systemd/99-store-edge.rules" "$R$RULES_DIR/99-store-edge.rules" 0644

# ---- 7. reload, enable, start ----------------------------------------------------------------------
step "service"
if [ -n "$R" ]; then
    say "skipped under --root: systemctl daemon-reload, udevadm control --reload, systemctl enable --now store-edge"
else
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
        say "systemctl daemon-reload"
        if [ "$DO_START" = 1 ]; then
            if systemctl is-active --quiet store-edge; then
                if [ "$CHANGED" = 1 ]; then
                    systemctl enable store-edge >/dev/null 2>&1
                    systemctl restart store-edge
                    say "restarted store-edge (it was running; the new files are in use now)"
                else
                    say "store-edge is running; nothing changed, not restarted"
                fi
            else
                systemctl enable --now store-edge
                say "systemctl enable --now store-edge"
            fi
            if systemctl is-active --quiet store-edge; then say "store-edge is active"; else
                say "WARNING: store-edge is not active: systemctl status store-edge; journalctl -u store-edge -b"; fi
        else
            say "not enabled or started (--no-start): sudo systemctl enable --now store-edge"
        fi
    else
        say "systemd is not running here (a container or chroot?): skipped daemon-reload and enable --now"
    fi
    if command -v udevadm >/dev/null 2>&1 && udevadm control --ping >/dev/null 2>&1; then
        udevadm control --reload
        udevadm trigger --action=change --subsystem-match=tty --subsystem-match=usbmisc \
            --subsystem-match=usb --subsystem-match=input >/dev/null 2>&1 || true
        say "udevadm control --reload; udevadm trigger (devices plugged in now get their /dev/pos names)"
    else
        say "udev is not running here: skipped udevadm control --reload"
    fi
fi

# ---- next steps --------------------------------------------------------------------------------
CONFIG_SHOWN=$CONFIG_DIR/config.toml
cat <<EOF

store-edge is installed. Next steps:
  1. edit the config: [store] id and name, devices, [cloud]:    sudoedit $CONFIG_SHOWN
     cloud token (if the store syncs):  sudo sh -c 'umask 077 && printf "%s\n" "TOKEN" > $CONFIG_DIR/cloud-token'
  2. check it:                          store-edge check-config $CONFIG_SHOWN
  3. a manager account for the dashboard:
                                        sudo -u $SERVICE_USER store-edge user add NAME --role manager --config $CONFIG_SHOWN
  4. check the machine (devices, cloud, clock, disk):
                                        sudo store-edge doctor --config $CONFIG_SHOWN
  5. after a config change:             sudo systemctl restart store-edge;  logs: journalctl -u store-edge -f
EOF
