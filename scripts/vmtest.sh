#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs one command as root in a qemu guest booted on a Debian kernel package (by default the newest Debian 12 6.1 amd64 one), on this machine's own files, and exits with its status.
#
# The guest: Debian's kernel from its .deb (apt-get download; nothing is installed into this
# machine's /boot), an initramfs made of busybox-static and the few modules needed to reach
# the host's root file system, which qemu shares read-only over 9p. An overlay with a tmpfs
# upper layer makes that root writable inside the guest only (the build tree, /tmp and the
# rest read as on the host; whatever the guest writes is gone when it stops). /run, /dev/shm,
# cgroup2, bpffs and debugfs are the guest's own. No network device (-nic none): the guest has
# loopback and whatever its command makes. No KVM needed (qemu's TCG emulation).
#
# The command's stdout and stderr arrive together on stdout; the kernel's console goes to a
# log that is shown when the guest ends without reporting a status.
# Exit status: the command's; 124 when the timeout killed the VM; 125 when the guest could not
# be made or ended without reporting one (boot failure, panic).
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/vmtest.sh [--kernel PACKAGE|FILE.deb] [--timeout SECONDS] [--mem MIB] [--cpus N] -- COMMAND [ARG]...

Boots PACKAGE (default: the newest linux-image-6.1.0-N-amd64 that apt knows) under qemu and
runs COMMAND there as root, from the current directory, with this environment.
  --kernel PKG   a Debian linux-image package name, or a .deb file
  --timeout S    kill the VM after S seconds and exit 124 (VMTEST_TIMEOUT, default 900)
  --mem MIB      guest memory (VMTEST_MEM, default 2048)
  --cpus N       guest CPUs (VMTEST_CPUS, default 2)
Prepared kernels are kept in VMTEST_CACHE (default /var/cache/kbackend-vmtest).
EOF
}

die() {
	echo "vmtest: $*" >&2
	exit 125
}

kernel=""
timeout=${VMTEST_TIMEOUT:-900}
mem=${VMTEST_MEM:-2048}
cpus=${VMTEST_CPUS:-2}
cache=${VMTEST_CACHE:-/var/cache/kbackend-vmtest}
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=${2:?--kernel needs a package}; shift 2 ;;
	--timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
	--mem) mem=${2:?--mem needs MiB}; shift 2 ;;
	--cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
case $timeout$mem$cpus in *[!0-9]*) usage >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || die "needs root (qemu shares / with root's view, and the guest runs as root)"
for tool in qemu-system-x86_64 busybox xz apt-get dpkg-deb setpriv flock; do
	command -v "$tool" >/dev/null || die "needs $tool (make deps installs it)"
done
# The initramfs copies /bin/busybox: it must be the static build to run there.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" ||
	die "needs busybox-static (make deps installs it)"

# ---- the kernel package: found with apt, downloaded once, unpacked into the cache ----

# The newest linux-image-6.1.0-N-amd64 (not -cloud-amd64, which has no 9p, nor -rt).
newest_kernel() {
	apt-cache pkgnames linux-image-6.1.0- 2>/dev/null | grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -n 1
}

# Print "pkg version" for $kernel, refreshing apt's lists once if it knows no such package.
resolve_kernel() {
	local pkg=$kernel ver=""
	if [ -z "$pkg" ]; then
		pkg=$(newest_kernel)
		if [ -z "$pkg" ]; then
			apt-get update -qq >&2 || true
			pkg=$(newest_kernel)
		fi
		[ -n "$pkg" ] || die "apt knows no linux-image-6.1.0-N-amd64 package (is Debian 12 in the apt sources?)"
	fi
	ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
	if [ -z "$ver" ]; then
		apt-get update -qq >&2 || true
		ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
	fi
	[ -n "$ver" ] || die "apt knows no package $pkg"
	echo "$pkg $ver"
}

# Offsets into a bzImage (the x86 boot protocol, Documentation/arch/x86/boot.rst): the setup
# header's "HdrS" at 0x202, setup_sects at 0x1f1 (0 means 4), and, relative to the
# protected-mode code after the setup sectors, payload_offset (0x248) and payload_length
# (0x24c), which locate the compressed vmlinux ELF. qemu boots that ELF directly (PVH entry),
# which under TCG saves the seconds the kernel would spend decompressing itself.
le32() { od -An -tu4 -j "$2" -N 4 "$1" | tr -d ' '; }
extract_vmlinux() {
	local img=$1 out=$2 sects start len magic
	[ "$(od -An -c -j $((0x202)) -N 4 "$img" | tr -d ' ')" = HdrS ] || return 1
	sects=$(od -An -tu1 -j $((0x1f1)) -N 1 "$img" | tr -d ' ')
	[ "$sects" = 0 ] && sects=4
	start=$(((sects + 1) * 512 + $(le32 "$img" $((0x248)))))
	len=$(le32 "$img" $((0x24c)))
	magic=$(od -An -tx1 -j "$start" -N 4 "$img" | tr -d ' ')
	# The payload ends with its 4-byte uncompressed size, which the decompressors must ignore.
	case $magic in
	fd377a58) tail -c +$((start + 1)) "$img" | head -c "$len" | xz -dc --single-stream >"$out" ;;
	28b52ffd) tail -c +$((start + 1)) "$img" | head -c "$len" | zstd -dcq 2>/dev/null >"$out" || true ;;
	1f8b*) tail -c +$((start + 1)) "$img" | head -c "$len" | gzip -dc 2>/dev/null >"$out" || true ;;
	*) return 1 ;;
	esac
	[ "$(od -An -tx1 -N 4 "$out" | tr -d ' ')" = 7f454c46 ]
}

# Modules (by name) and everything they depend on, in load order, from modules.dep.
declare -A dep_of path_of seen
load_order() {
	local line mod rest name
	while IFS= read -r line; do
		mod=${line%%:*}
		rest=${line#*:}
		dep_of[$mod]=$rest
		name=${mod##*/}
		name=${name%.ko*}
		path_of[${name//-/_}]=$mod
	done <"$1"
	shift
	for name; do
		[ -n "${path_of[${name//-/_}]:-}" ] || die "the kernel package has no module $name"
		visit "${path_of[${name//-/_}]}"
	done
}
order=()
visit() {
	local d
	[ -z "${seen[$1]:-}" ] || return 0
	seen[$1]=1
	for d in ${dep_of[$1]}; do visit "$d"; done
	order+=("$1")
}

# Modules the initramfs loads before it can see the host: the PCI transport, 9p over virtio.
BOOT_MODULES="virtio_pci 9pnet_virtio 9p overlay"
# Loaded once the host is mounted (everything else loads on demand through modprobe):
# veth for the tests' namespaces, the sock_diag modules behind `ss`.
EXTRA_MODULES="veth inet_diag tcp_diag udp_diag unix_diag"

prepare() {
	local pkg=$1 ver=$2 dir=$3 tmp kver deb m
	prep=$(mktemp -d "$cache/.prep.XXXXXX")
	tmp=$prep
	if [ -f "$kernel" ]; then
		cp "$kernel" "$tmp/"
	else
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
			{ apt-get update -qq >&2 || true; (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2); } ||
			die "apt-get download $pkg=$ver failed"
	fi
	deb=$(ls "$tmp"/*.deb)
	mkdir "$tmp/root"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/root" --wildcards './boot/vmlinuz-*' './lib/modules/*' ||
		die "cannot unpack $deb"
	rm -f "$deb"
	kver=$(ls "$tmp/root/lib/modules")
	[ -n "$kver" ] && [ -f "$tmp/root/boot/vmlinuz-$kver" ] || die "$pkg has no kernel image"
	# The package leaves modules.dep to its postinst; busybox's depmod writes it (and
	# modules.alias, which on-demand loading of veth, the diag modules etc. needs).
	busybox depmod -b "$tmp/root" "$kver" || die "depmod failed for $kver"
	if ! extract_vmlinux "$tmp/root/boot/vmlinuz-$kver" "$tmp/vmlinux"; then
		echo "vmtest: cannot unpack vmlinux from $pkg; booting the compressed image (slower)" >&2
		cp "$tmp/root/boot/vmlinuz-$kver" "$tmp/vmlinux"
	fi

	# The initramfs: busybox and the boot modules in load order (init comes with each run).
	local ird=$tmp/initramfs
	mkdir -p "$ird"/{bin,sbin,dev,proc,sys,lower,rw,newroot,modules,lib/modules}
	cp /bin/busybox "$ird/bin/busybox"
	for m in $(busybox --list); do [ "$m" = busybox ] || ln -s busybox "$ird/bin/$m"; done
	ln -s ../bin/busybox "$ird/sbin/modprobe"
	load_order "$tmp/root/lib/modules/$kver/modules.dep" $BOOT_MODULES
	for m in "${order[@]}"; do
		cp "$tmp/root/lib/modules/$kver/$m" "$ird/modules/"
		echo "${m##*/}" >>"$ird/modules/order"
	done
	echo "$kver" >"$ird/kver"
	echo "$dir/root/lib/modules" >"$ird/moddir"
	echo "$EXTRA_MODULES" >"$ird/extra-modules"
	(cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null) >"$tmp/initramfs.cpio" || die "cpio failed"
	rm -rf "$ird" "$tmp/root/boot"
	echo "$kver" >"$tmp/kver"
	mv "$tmp" "$dir"
	prep=""
}

# PID 1 of the guest (busybox sh). It stays in the initramfs, so the kernel's modprobe calls
# (which resolve paths from init's root) find busybox modprobe and the package's modules
# there; the command runs in a chroot on the overlaid host root.
write_init() {
	cat <<'EOF'
#!/bin/sh
# vmtest guest init: mount the host, run /cmd.sh in it, report its status on ttyS1, stop.
export PATH=/bin:/sbin
mount -t devtmpfs dev /dev
exec </dev/null >/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
fail() { echo "vmtest-init: $*"; reboot -f; }
for m in $(cat /modules/order); do insmod /modules/$m || fail "insmod $m"; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000 hostroot /lower || fail "9p mount"
mount -t tmpfs -o mode=0755 rw /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot || fail "overlay mount"
mount --bind "/lower$(cat /moddir)" /lib/modules || fail "modules bind"
echo /sbin/modprobe >/proc/sys/kernel/modprobe
modprobe -a $(cat /extra-modules) || fail "modprobe"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=0755 run $R/run
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t bpf bpf $R/sys/fs/bpf
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t tracefs tracefs $R/sys/kernel/tracing
# The modules the guest runs on, where user space looks for them.
mkdir -p $R/lib/modules && ln -s "$(cat /moddir)/$(cat /kver)" $R/lib/modules/
ip link set lo up
hostname vmtest
cp /cmd.sh $R/run/vmtest-cmd.sh
# The command writes into a pipe, as under make or a CI runner on the host (not a tty:
# no colours, the same buffering); cat carries it to ttyS1, in raw mode (no CR added).
stty -F /dev/ttyS1 raw -echo
mkfifo /out
cat /out >/dev/ttyS1 &
cat=$!
chroot $R /bin/bash /run/vmtest-cmd.sh </dev/null >/out 2>&1
rc=$?
# Whatever the command left running goes now (kernel threads ignore the signal), so that
# cat sees the end of its output; then the status, which tells the host to stop the VM.
for p in /proc/[0-9]*; do
	p=${p#/proc/}
	[ "$p" = 1 ] || [ "$p" = "$cat" ] || kill -KILL "$p" 2>/dev/null
done
wait "$cat"
echo "$(cat /marker) $rc" >/dev/ttyS1
reboot -f
EOF
}

# Whatever way this script ends, the VM and the temporary files go with it.
run="" prep="" qpid=""
cleanup() {
	if [ -n "$qpid" ]; then
		kill -KILL "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$run" "$prep"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -d "$cache" ] || mkdir -p "$cache"
if [ -n "$kernel" ] && [ -f "$kernel" ]; then
	case $kernel in *.deb) ;; *) die "$kernel is not a .deb" ;; esac
	kernel=$(realpath "$kernel")
	pkg=$(dpkg-deb -f "$kernel" Package)
	ver=$(dpkg-deb -f "$kernel" Version)
else
	read -r pkg ver < <(resolve_kernel) || true
	[ -n "${ver:-}" ] || exit 125
fi
kdir=$cache/${pkg}_${ver//:/%}
if [ ! -f "$kdir/kver" ]; then
	exec {lockfd}>"$cache/lock"
	flock "$lockfd"
	[ -f "$kdir/kver" ] || { echo "vmtest: preparing $pkg $ver in $cache" >&2; prepare "$pkg" "$ver" "$kdir"; }
	exec {lockfd}>&-
fi
kver=$(cat "$kdir/kver")

# ---- one run: the command, its environment and directory, packed as a second cpio ----

run=$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")
marker="vmtest-status-$(od -An -tx8 -N 8 /dev/urandom | tr -d ' ')"
mkdir "$run/cpio"
{
	echo "# vmtest: the caller's environment, directory and command"
	for name in $(compgen -e); do
		case $name in PWD | OLDPWD | SHLVL | _ | HOSTNAME) continue ;; esac
		printf 'export %s=%q\n' "$name" "${!name}"
	done
	printf 'export VMTEST_KERNEL=%q\n' "$pkg $ver"
	printf 'cd -- %q || exit 125\n' "$PWD"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$run/cpio/cmd.sh"
echo "$marker" >"$run/cpio/marker"
# init comes with each run, not with the cached kernel, so a change to it needs no re-prepare.
write_init >"$run/cpio/init"
chmod 0755 "$run/cpio/init"
(cd "$run/cpio" && find . | busybox cpio -o -H newc 2>/dev/null) >"$run/run.cpio"
cat "$kdir/initramfs.cpio" "$run/run.cpio" >"$run/initrd"

# ---- the VM: killed at the timeout, on any exit of this script, or if this script dies ----

# ttyS0: the kernel console, into a log; ttyS1 (stdio): the command's output and status.
coproc QEMU {
	exec setpriv --pdeathsig KILL -- qemu-system-x86_64 \
		-nodefaults -no-user-config -no-reboot -display none \
		-machine pc -accel tcg -cpu max -smp "$cpus" -m "$mem" \
		-nic none \
		-kernel "$kdir/vmlinux" -initrd "$run/initrd" \
		-append "console=ttyS0 panic=-1 quiet rdinit=/init ${VMTEST_APPEND:-}" \
		-serial "file:$run/console.log" -serial stdio \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		</dev/null
}
qpid=$QEMU_PID
out=${QEMU[0]}

status=""
deadline=$((SECONDS + timeout))
while :; do
	left=$((deadline - SECONDS))
	if [ "$left" -le 0 ]; then
		echo "vmtest: timed out after ${timeout}s; killing the VM ($kver)" >&2
		exit 124
	fi
	line=""
	if IFS= read -r -t "$left" -u "$out" line; then
		line=${line%$'\r'}
	else
		rc=$?
		if [ "$rc" -gt 128 ]; then
			[ -z "$line" ] || printf '%s' "$line"
			continue
		fi
		# End of output: qemu exited without the status line.
		[ -z "$line" ] || printf '%s\n' "$line"
		break
	fi
	case $line in
	*"$marker "*)
		status=${line##*"$marker "}
		line=${line%"$marker "*}
		[ -z "$line" ] || printf '%s\n' "$line"
		break
		;;
	esac
	printf '%s\n' "$line"
done

if [ -z "$status" ]; then
	echo "vmtest: the guest ($kver) ended without reporting a status; its console:" >&2
	tail -n 40 "$run/console.log" >&2 || true
	exit 125
fi
exit "$status"
