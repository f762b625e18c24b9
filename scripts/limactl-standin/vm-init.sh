#!/bin/bash
# vm-init.sh — pid 1 of a limactl stand-in "VM".
#
# Started by `limactl start` as
#   setsid unshare --pid --mount --uts --fork --mount-proc --propagation private \
#     /bin/bash vm-init.sh INST_DIR GUEST_HOME SSHD HOSTNAME
# so it is pid 1 of a fresh pid namespace with a private mount namespace.
#
# It installs NO signal handler on purpose: as a namespace init it then ignores
# SIGTERM/SIGINT/SIGHUP, and `limactl stop` ends the whole VM with SIGKILL (the
# kernel then kills every process of the namespace, like a power-off).
#
# Boot:
# - the VM gets its own /home and its own /tmp (tmpfs: a guest-only /tmp, gone at power-off);
# - what INST_DIR/mounts.tsv lists (SOURCE<TAB>TARGET<TAB>rw|ro: LIMA_HOME, which sshd reads, and the
#   template's `mounts:`) is bind-mounted again at TARGET, read-only unless rw;
# - the persistent guest home (INST_DIR/guest-home) is bind-mounted on GUEST_HOME, and the guest's
#   account files (INST_DIR/passwd, group, shadow, sudoers.d) over the host's;
# then it supervises an sshd that runs inside the namespaces (restarted 0.3 s after it dies, like systemd
# would). bash reaps every child (it waits with waitpid(-1)), so orphans adopted by this init do not pile
# up as zombies.
set -u
inst_dir=$1
guest_home=$2
sshd=$3
vm_hostname=${4:-}

log() {
	printf 'time="%s" level=%s msg="[vm-init] %s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" >&2
}
die() {
	log fatal "$1"
	exit 1
}

[ -n "$vm_hostname" ] && hostname "$vm_hostname" 2>/dev/null

# Keep a handle on every source first: the tmpfs on /home and /tmp would hide the ones below them.
fds=()
targets=()
modes=()
while IFS=$'\t' read -r src dst mode; do
	[ -n "$src" ] || continue
	if exec {fd}<"$src"; then
		fds+=("$fd")
		targets+=("$dst")
		modes+=("$mode")
	else
		log warning "mount source $src cannot be opened; skipped"
	fi
done <"$inst_dir/mounts.tsv"

mkdir -p /home /tmp
mount -t tmpfs -o mode=0755 lima-guest-home /home || die "cannot mount a tmpfs on /home"
mount -t tmpfs -o mode=1777 lima-guest-tmp /tmp || die "cannot mount a tmpfs on /tmp"

for i in "${!fds[@]}"; do
	t=${targets[$i]}
	case $t/ in
	/home/* | /tmp/*) mkdir -p "$t" || die "cannot create $t" ;;
	*) [ -e "$t" ] || { log warning "mount point $t does not exist; skipped"; continue; } ;;
	esac
	mount --no-canonicalize --bind "/proc/self/fd/${fds[$i]}" "$t" || die "cannot mount ${fds[$i]} on $t"
	if [ "${modes[$i]}" = ro ]; then
		mount -o remount,bind,ro "$t" || die "cannot make $t read-only"
	fi
done
for fd in "${fds[@]}"; do
	exec {fd}<&-
done

mkdir -p "$guest_home" || die "cannot create $guest_home"
mount --bind "$inst_dir/guest-home" "$guest_home" || die "cannot bind-mount the guest home on $guest_home"
case $guest_home in
/home/*.guest)
	# Lima's boot script keeps the pre-v2.1 name as a symlink (boot.Linux/05-guest-home.sh).
	ln -s "${guest_home##*/}" "${guest_home%.guest}.linux" 2>/dev/null
	;;
esac
for f in passwd group shadow hosts hostname; do
	mount --bind "$inst_dir/$f" "/etc/$f" || die "cannot bind-mount $inst_dir/$f on /etc/$f"
done
if [ -d "$inst_dir/sudoers.d" ] && [ -d /etc/sudoers.d ]; then
	mount --bind "$inst_dir/sudoers.d" /etc/sudoers.d || die "cannot bind-mount $inst_dir/sudoers.d on /etc/sudoers.d"
fi
mkdir -p /run/sshd

log info "boot done, supervising sshd"
while :; do
	"$sshd" -D -e -f "$inst_dir/sshd_config"
	sleep 0.3
done
