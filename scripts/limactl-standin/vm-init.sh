#!/bin/bash
# vm-init.sh — pid 1 of a limactl stand-in "VM".
#
# Started by `limactl start` as
#   setsid unshare --pid --mount --uts --fork --mount-proc --propagation private \
#     /bin/bash vm-init.sh INST_DIR LIMA_HOME GUEST_HOME SSHD HOSTNAME
# so it is pid 1 of a fresh pid namespace with a private mount namespace.
#
# It installs NO signal handler on purpose: as a namespace init it then ignores
# SIGTERM/SIGINT/SIGHUP, and `limactl stop` ends the whole VM with SIGKILL (the
# kernel then kills every process of the namespace, like a power-off).
#
# Boot: give the VM its own /home (tmpfs) with the persistent guest home
# ($INST_DIR/guest-home) bind-mounted on GUEST_HOME, and a per-VM /etc/passwd
# whose home field for the user is GUEST_HOME. Then supervise an sshd that runs
# inside the namespaces (restarted 0.3 s after it dies, like systemd would).
# bash reaps every child (it waits with waitpid(-1)), so orphans adopted by this
# init do not pile up as zombies.
set -u
inst_dir=$1
lima_home=$2
guest_home=$3
sshd=$4
vm_hostname=${5:-}

log() {
	printf 'time="%s" level=%s msg="[vm-init] %s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" >&2
}
die() {
	log fatal "$1"
	exit 1
}

[ -n "$vm_hostname" ] && hostname "$vm_hostname" 2>/dev/null

# Keep a handle on LIMA_HOME: the tmpfs on /home would hide it when it lives under /home.
exec 3<"$lima_home" || die "cannot open $lima_home"
case $guest_home in
/home/*)
	[ -d /home ] || mkdir -p /home
	mount -t tmpfs -o mode=0755 lima-guest-home /home || die "cannot mount a tmpfs on /home"
	case $lima_home/ in
	/home/*)
		# Re-expose LIMA_HOME at its own path (sshd needs the host key and authorized key).
		mkdir -p "$lima_home" || die "cannot create $lima_home"
		mount --no-canonicalize --bind /proc/self/fd/3 "$lima_home" || die "cannot re-expose $lima_home"
		;;
	esac
	;;
esac
exec 3<&-

mkdir -p "$guest_home" || die "cannot create $guest_home"
mount --bind "$inst_dir/guest-home" "$guest_home" || die "cannot bind-mount the guest home on $guest_home"
case $guest_home in
/home/*.guest)
	# Lima's boot script keeps the pre-v2.1 name as a symlink.
	ln -s "${guest_home##*/}" "${guest_home%.guest}.linux" 2>/dev/null
	;;
esac
mount --bind "$inst_dir/passwd" /etc/passwd || die "cannot bind-mount $inst_dir/passwd on /etc/passwd"
mkdir -p /run/sshd

log info "boot done, supervising sshd"
while :; do
	"$sshd" -D -e -f "$inst_dir/sshd_config"
	sleep 0.3
done
