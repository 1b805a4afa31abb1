#!/bin/bash
# tests/systemd/machine.sh - the project's own throwaway systemd machine for the tests: the machine's
# real systemd (/lib/systemd/systemd) as PID 1 of a container made of Linux namespaces, on a machine
# (a CI runner, a container) whose own PID 1 is not systemd. tests/realsystemd.py drives it; every
# clone of the repository carries it, so the real-systemd tests run wherever root and cgroup2 are.
#
# Usage (as root):
#   machine.sh start            boot the instance, wait until `systemctl is-system-running`
#                               says running/degraded (prints the state)
#   machine.sh run -- CMD ...   run CMD inside it (all its namespaces: systemctl, journalctl,
#                               curl 127.0.0.1 ... work); exit code is CMD's. Starts it if needed.
#   machine.sh shell            interactive bash inside
#   machine.sh stop [--hard]    clean shutdown (SIGRTMIN+4 = poweroff: units are stopped the way
#                               systemd stops them at shutdown), SIGKILL of PID 1 after
#                               RSD_STOP_TIMEOUT s; --hard = SIGKILL now (power cut)
#   machine.sh reboot [--hard]  stop + start: a simulated reboot; /etc and /var persist, /run and
#                               /tmp are fresh, enabled units come back
#   machine.sh status           running? host PID of its PID 1, system state
#   machine.sh pid              host PID of the container's PID 1 (exit 1 if not running)
#   machine.sh console          output of the container setup (errors before systemd runs);
#                               systemd itself logs to its journal: run -- journalctl -b
#   machine.sh reset            stop --hard and wipe the persistent state (a fresh "disk")
#
# Environment:
#   RSD_NAME=rsd           instance name (several can run side by side)
#   RSD_STATE=/var/lib/real-systemd/$RSD_NAME   state folder (overlay upper = the "disk")
#   RSD_BINDS="$PWD"       host folders bind-mounted read-write at the same path inside (space separated)
#   RSD_MASK="..."         extra units to mask (added to the built-in list, first start after reset only)
#   RSD_NET=private        private = own network namespace (only lo); host = share the host's network
#   RSD_STOP_TIMEOUT=120   seconds a clean stop may take before SIGKILL
#
# How it works: unshare --pid --mount --uts --ipc --net --cgroup; the new PID 1 mounts an overlayfs
# (lower = host /, upper = $RSD_STATE/upper) as the root, a fresh proc, a read-only sysfs, a pure
# cgroup2 hierarchy (own cgroup, delegated via cgroupns), a minimal /dev, tmpfs /run and /tmp,
# pivot_root()s into it and execs systemd with container=real-systemd. Writes to / land in the upper
# dir, never on the host (except the RSD_BINDS folders). The host's init is never touched.
# Host quirks handled: hybrid cgroup v1/v2 host (only the v2 hierarchy is given to the container),
# CAP_SYS_RESOURCE absent (systemd clamps rlimits itself), units that make no sense in a container
# or would touch the host are masked (postgresql, timers, timesyncd, ...).
# (Begun as the workplace's shared/tools/real-systemd.sh; kept here so no test reads outside the repo.)
set -u

NAME=${RSD_NAME:-rsd}
STATE=${RSD_STATE:-/var/lib/real-systemd/$NAME}
BINDS=${RSD_BINDS-$PWD}
NETMODE=${RSD_NET:-private}
STOP_TIMEOUT=${RSD_STOP_TIMEOUT:-120}
SELF=$(readlink -f "$0")
SYSTEMD_BIN=/lib/systemd/systemd
[ -x $SYSTEMD_BIN ] || SYSTEMD_BIN=/usr/lib/systemd/systemd
MASK_DEFAULT="postgresql.service getty@tty1.service systemd-timesyncd.service apt-daily.timer \
apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
man-db.timer systemd-tmpfiles-clean.timer console-getty.service systemd-networkd-wait-online.service \
systemd-modules-load.service modprobe@.service systemd-binfmt.service systemd-pstore.service"

die() { echo "machine.sh: $*" >&2; exit 1; }

cg_base() {   # the cgroup2 hierarchy on the host
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup
    elif [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup/unified)" = cgroup2fs ]; then
        echo /sys/fs/cgroup/unified
    else die "no cgroup2 hierarchy mounted on the host"; fi
}
CG="$(cg_base)/real-systemd-$NAME"

pid1() {      # host PID of the container's PID 1, if alive
    local u p
    [ -f "$STATE/unshare.pid" ] || return 1
    u=$(cat "$STATE/unshare.pid")
    [ -d "/proc/$u" ] || return 1
    grep -q '^unshare' "/proc/$u/comm" 2>/dev/null || return 1
    p=$(cat "/proc/$u/task/$u/children" 2>/dev/null | awk '{print $1}')
    [ -n "$p" ] && [ -d "/proc/$p" ] || return 1
    echo "$p"
}

inside() {    # run a command in every namespace of the container
    local p; p=$(pid1) || die "not running (real-systemd.sh start)"
    nsenter -t "$p" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 \
        SYSTEMD_LESS=FRXMK RSD_CWD="$PWD" \
        /bin/sh -c 'cd "$RSD_CWD" 2>/dev/null || cd /; exec "$@"' sh "$@"
}

prepare_upper() {   # first boot of a fresh "disk": configuration that only the container sees
    local u=$STATE/upper m
    mkdir -p "$u/etc/systemd/system" "$u/etc/tmpfiles.d" "$u/etc/systemd/system.conf.d"
    # never let systemd-tmpfiles wipe /tmp at boot (it is a tmpfs here anyway, but it holds binds)
    echo 'd /tmp 1777 root root -' > "$u/etc/tmpfiles.d/tmp.conf"
    for m in $MASK_DEFAULT ${RSD_MASK:-}; do ln -sfn /dev/null "$u/etc/systemd/system/$m"; done
    cat > "$u/etc/systemd/system.conf.d/real-systemd.conf" <<EOF
[Manager]
# the host has no CAP_SYS_RESOURCE: services cannot get a hard NOFILE limit above this one
DefaultLimitNOFILE=1024:$(ulimit -Hn)
ShowStatus=yes
EOF
    echo "$NAME" > "$u/etc/hostname"
    touch "$STATE/.prepared"
}

inner() {     # runs as PID 1 of the new PID namespace, in the new mount namespace
    set -e
    local R=$STATE/root p
    mount --make-rprivate /
    mount -t overlay overlay -o "lowerdir=/,upperdir=$STATE/upper,workdir=$STATE/work" "$R"
    mount -t proc proc "$R/proc" -o nosuid,nodev,noexec
    mount --bind "$R/proc/sys" "$R/proc/sys"; mount -o remount,bind,ro "$R/proc/sys"
    # a new boot id per boot (the kernel's is shared with the host), as systemd-nspawn does
    cat /proc/sys/kernel/random/uuid > "$STATE/boot_id"
    mount --bind "$STATE/boot_id" "$R/proc/sys/kernel/random/boot_id"
    mount -o remount,bind,ro "$R/proc/sys/kernel/random/boot_id"
    if [ -e "$R/proc/sysrq-trigger" ]; then
        mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"
        mount -o remount,bind,ro "$R/proc/sysrq-trigger"
    fi
    mount -t sysfs sysfs "$R/sys" -o ro,nosuid,nodev,noexec
    mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup" -o rw,nosuid,nodev,noexec
    mount -t tmpfs tmpfs "$R/dev" -o nosuid,mode=755,size=4m
    mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5
    mknod -m 666 "$R/dev/full" c 1 7; mknod -m 666 "$R/dev/random" c 1 8
    mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
    mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
    mount -t devpts devpts "$R/dev/pts" -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec
    ln -s pts/ptmx "$R/dev/ptmx"
    mount -t tmpfs tmpfs "$R/dev/shm" -o nosuid,nodev,mode=1777
    mount -t mqueue mqueue "$R/dev/mqueue" -o nosuid,nodev,noexec
    ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
    ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
    # /dev/console = the log file (in practice systemd logs to its journal; this catches the rest)
    touch "$R/dev/console"; mount --bind "$STATE/console.log" "$R/dev/console"
    mount -t tmpfs tmpfs "$R/run" -o nosuid,nodev,mode=755,size=20%
    mount -t tmpfs tmpfs "$R/tmp" -o nosuid,nodev,mode=1777,size=20%
    for p in $BINDS; do
        [ -d "$p" ] || { echo "real-systemd: bind $p: no such folder on the host, skipped"; continue; }
        mkdir -p "$R$p"; mount --bind "$p" "$R$p"
    done
    hostname "$NAME"
    cd "$R"
    pivot_root . .
    umount -l .
    cd /
    exec env -i container=real-systemd TERM=dumb "$SYSTEMD_BIN" --system --show-status=yes
}

start() {
    local p u i st
    if p=$(pid1); then echo "already running (PID 1 = host pid $p)"; return 0; fi
    [ "$(id -u)" = 0 ] || die "must be root"
    if [ ! -x "$SYSTEMD_BIN" ] || ! command -v dbus-daemon >/dev/null; then   # a fresh machine: install them
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd dbus >/dev/null \
            || die "cannot install systemd and dbus (apt-get install systemd dbus)"
        SYSTEMD_BIN=/lib/systemd/systemd; [ -x $SYSTEMD_BIN ] || SYSTEMD_BIN=/usr/lib/systemd/systemd
    fi
    mkdir -p "$STATE/upper" "$STATE/work" "$STATE/root"
    [ -f "$STATE/.prepared" ] || prepare_upper
    rm -rf "$STATE/work/work" 2>/dev/null   # overlay scratch, safe to drop between boots
    : > "$STATE/console.log"
    # leftover cgroup of a killed instance: remove it bottom-up
    if [ -d "$CG" ]; then
        [ -f "$CG/cgroup.kill" ] && echo 1 > "$CG/cgroup.kill" 2>/dev/null
        sleep 0.3; find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$CG" ] && die "cgroup $CG still busy"
    fi
    mkdir "$CG" || die "cannot create cgroup $CG"
    local netflag=--net; [ "$NETMODE" = host ] && netflag=
    # the launcher joins the cgroup first, so the cgroup namespace is rooted there
    setsid /bin/bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$CG" \
        unshare --pid --fork --kill-child --mount --uts --ipc $netflag --cgroup --propagation private \
        /bin/bash "$SELF" __inner "$NAME" >> "$STATE/console.log" 2>&1 < /dev/null 9>&- &
    u=$!
    echo "$u" > "$STATE/unshare.pid"
    for i in $(seq 50); do p=$(pid1) && break; sleep 0.1; done
    [ -n "${p:-}" ] || { cat "$STATE/console.log" >&2; die "container did not start"; }
    # the unshare process itself goes back to the host root cgroup: only the container stays in $CG
    echo "$u" > "$(cg_base)/cgroup.procs" 2>/dev/null || true
    echo "$p" > "$STATE/pid1"
    # wait for boot to finish
    for i in $(seq 600); do
        if ! pid1 >/dev/null; then cat "$STATE/console.log" >&2; die "systemd exited during boot"; fi
        st=$(inside systemctl is-system-running 2>/dev/null)
        case "$st" in running|degraded) break;; esac
        sleep 0.2
    done
    echo "real-systemd '$NAME' up: PID 1 = host pid $p, state: ${st:-unknown}"
}

stop() {
    local p u i hard=${1:-}
    u=$(cat "$STATE/unshare.pid" 2>/dev/null)
    if p=$(pid1); then
        if [ "$hard" != --hard ]; then
            kill -s SIGRTMIN+4 "$p"     # systemd: start poweroff.target
            for i in $(seq $((STOP_TIMEOUT * 5))); do [ -d "/proc/$p" ] || break; sleep 0.2; done
        fi
        if [ -d "/proc/$p" ]; then
            [ "$hard" != --hard ] && echo "clean stop timed out: SIGKILL" >&2
            kill -KILL "$p" 2>/dev/null   # PID 1 of the namespace dies: the kernel kills all of it
        fi
    fi
    if [ -n "$u" ]; then for i in $(seq 50); do [ -d "/proc/$u" ] || break; sleep 0.1; done; fi
    if [ -d "$CG" ]; then
        [ -f "$CG/cgroup.kill" ] && echo 1 > "$CG/cgroup.kill" 2>/dev/null
        for i in $(seq 50); do
            find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null; [ -d "$CG" ] || break; sleep 0.1
        done
    fi
    rm -f "$STATE/unshare.pid" "$STATE/pid1"
    [ -d "$CG" ] && die "cgroup $CG not removed (processes left?)"
    echo "real-systemd '$NAME' stopped"
}

cmd=${1:-}; shift || true
case "$cmd" in start|stop|reboot|reset)   # one lifecycle change at a time per instance
    mkdir -p "$STATE"; exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another start/stop of '$NAME' is still running" ;;
esac
case "$cmd" in
    __inner) inner ;;
    start) start ;;
    stop) stop "${1:-}" ;;
    reboot) stop "${1:-}" && start ;;
    run) [ "${1:-}" = -- ] && shift; [ $# -gt 0 ] || die "run -- CMD..."
         pid1 >/dev/null || "$SELF" start >&2 || exit 1
         inside "$@" ;;
    shell) pid1 >/dev/null || "$SELF" start >&2 || exit 1; inside /bin/bash -l ;;
    pid) pid1 ;;
    status) if p=$(pid1); then echo "running: PID 1 = host pid $p, system: $(inside systemctl is-system-running 2>&1)"
            else echo "not running"; exit 3; fi ;;
    console) cat "$STATE/console.log" ;;
    reset) stop --hard >/dev/null 2>&1; rm -rf "$STATE"; echo "state $STATE wiped" ;;
    *) sed -n '2,/^set -u/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
