#!/bin/bash
# host-init.sh — pid 1 of a test SSH host (scripts/ssh-hosts/ssh-hosts.mjs).
#
# Started as
#   unshare --kill-child=SIGKILL --pid --mount --uts --fork --mount-proc --propagation private \
#     /bin/bash host-init.sh HOST_DIR USER GUEST_HOME SSHD HOSTNAME
# so it is pid 1 of a fresh pid namespace with a private mount namespace, and dies (taking every process of the
# host with it) when its unshare parent is SIGKILLed: that is how a test powers a host off.
#
# Boot: a tmpfs on /home holding GUEST_HOME, onto which HOST_DIR/home is bind-mounted; HOST_DIR/passwd and
# HOST_DIR/group bind-mounted on /etc/passwd and /etc/group (they add the host's own user, who exists nowhere
# else). Then supervise sshd (restarted 0.3 s after it dies, unless HOST_DIR/sshd.hold exists). No signal handler: as a namespace init it ignores
# SIGTERM; bash reaps every child, so orphans adopted here do not pile up as zombies.
set -u
dir=$1
user=$2
home=$3
sshd=$4
name=${5:-}

die() {
	printf '[host-init %s] %s\n' "$name" "$1" >>"$dir/init.log"
	exit 1
}

[ -n "$name" ] && hostname "$name" 2>/dev/null
# Keep a handle on HOST_DIR: the tmpfs on /home would hide it if it lived under /home.
exec 3<"$dir" || die "cannot open $dir"
mount -t tmpfs -o mode=0755 fabrik-ssh-host /home || die "cannot mount a tmpfs on /home"
case $dir/ in
/home/*)
	mkdir -p "$dir" && mount --no-canonicalize --bind /proc/self/fd/3 "$dir" || die "cannot re-expose $dir"
	;;
esac
exec 3<&-
mkdir -p "$home" || die "cannot create $home"
mount --bind "$dir/home" "$home" || die "cannot bind-mount the home on $home"
mount --bind "$dir/passwd" /etc/passwd || die "cannot bind-mount passwd"
mount --bind "$dir/group" /etc/group || die "cannot bind-mount group"
mkdir -p /run/sshd
while :; do
	# While HOST_DIR/sshd.hold exists sshd stays down (a network outage the tests make: the host's runs go on).
	while [ -e "$dir/sshd.hold" ]; do sleep 0.1; done
	"$sshd" -D -f "$dir/sshd_config" -E "$dir/sshd.log"
	sleep 0.3
done
