# shellcheck shell=bash
# Helpers shared by images/build and images/testbed/run. Sourced, never run.
# Callers set IMAGES (the images/ directory) before sourcing.

OUT=${IMAGES_OUT:-$IMAGES/out}
STAMPS=$OUT/.stamps

log() { printf 'images: %s\n' "$*" >&2; }
die() {
	printf 'images: error: %s\n' "$*" >&2
	exit 1
}

# load_versions: read images/versions.env (KEY=value lines only, no code).
load_versions() {
	local line key val
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in '' | '#'*) continue ;; esac
		key=${line%%=*}
		val=${line#*=}
		case $key in
		*[!A-Z0-9_]* | '') die "versions.env: bad line: $line" ;;
		esac
		printf -v "$key" '%s' "$val"
		export "${key?}"
	done <"$IMAGES/versions.env"
	KVER=$KERNEL_ABI-$KERNEL_FLAVOUR
	KPKG=linux-image-$KVER
	KDEB=$OUT/cache/${KPKG}_${KERNEL_DEB_VERSION}_amd64.deb
	KDIR=$OUT/kernel/$KVER
	MODDIR=$KDIR/lib/modules/$KVER
}

# sha256 FILE: print the file's SHA-256.
sha256() {
	local h
	h=$(sha256sum <"$1") || return 1
	printf '%s\n' "${h%% *}"
}

# digest ARG...: one SHA-256 over files (content), directories (names, modes,
# link targets and contents) and literal strings written as str:TEXT.
digest() {
	local a
	for a in "$@"; do
		case $a in
		str:*) printf 'S %s\n' "${a#str:}" ;;
		*)
			if [ -d "$a" ]; then
				printf 'D %s %s\n' "${a##*/}" "$(tar -C "$a" --sort=name --mtime=@0 --owner=0 --group=0 \
					--numeric-owner -cf - . | sha256sum)"
			elif [ -f "$a" ]; then
				printf 'F %s %s\n' "${a##*/}" "$(sha256 "$a")"
			else
				printf 'M %s\n' "$a"
			fi
			;;
		esac
	done | sha256sum | cut -d' ' -f1
}

# fresh NAME DIGEST OUTPUT...: true if step NAME last ran with DIGEST and all
# its outputs still exist.
fresh() {
	local name=$1 want=$2 o
	shift 2
	[ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$want" ] || return 1
	for o in "$@"; do
		[ -e "$o" ] || return 1
	done
}

# done_step NAME DIGEST: record that step NAME produced its outputs from DIGEST.
done_step() {
	mkdir -p "$STAMPS"
	printf '%s\n' "$2" >"$STAMPS/$1"
}

# normalize_tree DIR: fixed modes (no group/other write) and timestamps.
normalize_tree() {
	chmod -R u+rwX,go+rX,go-w "$1"
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# cpio_tree DIR: write DIR as a sorted, reproducible newc archive to stdout.
cpio_tree() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc --reproducible --owner=0:0 --quiet)
}

# pad512 FILE: append zeros up to a multiple of 512 bytes.
pad512() {
	local size
	size=$(stat -c %s "$1")
	truncate -s $(((size + 511) / 512 * 512)) "$1"
}

# cpio_console: a newc archive holding only /dev/console (char 5:1, 0600),
# which the kernel opens for init's stdio before devtmpfs is mounted.
# Device nodes cannot be staged without root, so the header is written here.
cpio_console() {
	local name=dev/console
	# newc header: magic, then ino mode uid gid nlink mtime filesize devmajor
	# devminor rdevmajor rdevminor namesize check, each 8 hex digits.
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		1 $((0020600)) 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 5 1 $((${#name} + 1)) 0
	printf '%s\0' "$name"
	# 110-byte header + 12-byte name = 122: pad to 124.
	printf '\0\0'
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		0 0 0 0 1 0 0 0 0 0 0 11 0
	printf 'TRAILER!!!\0'
	# 124 + 110 + 11 = 245 bytes so far: pad the archive to 512.
	head -c $((512 - 245)) /dev/zero
}

# stage_busybox DIR: busybox-static with one symlink per applet, except init
# and linuxrc (the images bring their own /init).
stage_busybox() {
	local dir=$1 bb applet
	bb=$(command -v busybox) || die "busybox not found; apt-get install busybox-static"
	file_is_static "$bb" || die "$bb is not statically linked; apt-get install busybox-static"
	mkdir -p "$dir/bin"
	cp "$bb" "$dir/bin/busybox"
	"$bb" --list-full | while IFS= read -r applet; do
		case $applet in
		sbin/init | linuxrc | bin/busybox | '') continue ;;
		esac
		mkdir -p "$dir/${applet%/*}"
		ln -sf /bin/busybox "$dir/$applet"
	done
}

# file_is_static FILE: true if FILE is an ELF without a program interpreter.
file_is_static() {
	readelf -l "$1" 2>/dev/null | grep -q 'Elf file type' &&
		! readelf -l "$1" 2>/dev/null | grep -q 'INTERP'
}

# module_index: fill MODPATH[name] with each module's path under MODDIR
# (names normalised to '_'); compressed modules are listed as found.
declare -gA MODPATH=()
module_index() {
	local f base
	MODPATH=()
	while IFS= read -r f; do
		base=${f##*/}
		base=${base%%.ko*}
		MODPATH[${base//-/_}]=$f
	done < <(cd "$MODDIR" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' | LC_ALL=C sort)
}

# module_builtin NAME: true if NAME is built into the kernel.
module_builtin() {
	local n=$1
	sed 's|.*/||; s|\.ko$||; s|-|_|g' "$MODDIR/modules.builtin" | grep -qx "$n"
}

# module_copy NAME DEST: copy module NAME, decompressed, to DEST.
module_copy() {
	local src=$MODDIR/${MODPATH[$1]}
	case $src in
	*.ko) cp "$src" "$2" ;;
	*.ko.xz) xz -dc "$src" >"$2" ;;
	*.ko.zst) zstd -qdc "$src" >"$2" ;;
	*.ko.gz) gzip -dc "$src" >"$2" ;;
	esac
}

# module_deps FILE: the names in the module's .modinfo "depends=" field.
module_deps() {
	local tmp
	tmp=$(mktemp)
	objcopy -O binary --only-section=.modinfo "$1" "$tmp" ||
		{
			rm -f "$tmp"
			die "objcopy failed on $1"
		}
	tr '\0' '\n' <"$tmp" | sed -n 's/^depends=//p' | tr ',' '\n' | sed 's/-/_/g' | grep -v '^$' || true
	rm -f "$tmp"
}

# stage_modules DEST LISTFILE [optional]: copy the modules named in LISTFILE
# (one per line, '#' comments) and their dependencies to DEST/lib/modules/KVER/
# as NAME.ko, and write DEST/lib/modules/KVER/load-order with dependencies
# first. Built-in modules are skipped with a note; a missing module is fatal
# unless the third argument is "optional".
stage_modules() {
	local dest=$1/lib/modules/$KVER list=$2 optional=${3:-} name
	local -A seen=()
	local -a order=()
	mkdir -p "$dest"
	[ ${#MODPATH[@]} -gt 0 ] || module_index
	_visit() {
		local n=$1 d tmpko deps
		case ${seen[$n]:-} in
		done) return 0 ;;
		busy) die "module dependency cycle at $n" ;;
		esac
		if [ -z "${MODPATH[$n]:-}" ]; then
			if module_builtin "$n"; then
				log "  module $n is built into $KVER; skipped"
				seen[$n]=done
				return 0
			fi
			[ "$optional" = optional ] && {
				log "  optional module $n not found; skipped"
				seen[$n]=done
				return 0
			}
			die "module $n not found in $KPKG"
		fi
		seen[$n]=busy
		tmpko=$dest/$n.ko
		module_copy "$n" "$tmpko"
		deps=$(module_deps "$tmpko") || die "cannot read the dependencies of $n"
		for d in $deps; do
			_visit "$d"
		done
		seen[$n]=done
		order+=("$n")
	}
	while IFS= read -r name; do
		name=${name%%#*}
		name=${name//[[:space:]]/}
		[ -n "$name" ] || continue
		_visit "${name//-/_}"
	done <"$list"
	printf '%s\n' "${order[@]}" >>"$dest/load-order"
	awk '!seen[$0]++' "$dest/load-order" >"$dest/load-order.tmp"
	mv "$dest/load-order.tmp" "$dest/load-order"
}

# human SIZE_BYTES: a short size for progress lines.
human() {
	numfmt --to=iec --suffix=B "$1"
}

# apt_present PKG: true if the Debian package is installed.
apt_present() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}
