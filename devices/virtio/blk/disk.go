package blk

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrReadOnly is returned for writes to a disk opened read-only.
var ErrReadOnly = errors.New("virtio-blk: disk is read-only")

// ErrNotSupported is returned by Discard when the file cannot punch holes.
var ErrNotSupported = errors.New("virtio-blk: operation not supported by the backing file")

// ErrInUse is returned by OpenDisk for a file another open disk holds in a
// conflicting way: two writers, or a writer and a reader.
var ErrInUse = errors.New("in use by another VM or disk (a conflicting lock is held on it)")

const (
	iovMax    = 1024     // IOV_MAX on Linux: the most iovecs one preadv takes
	zeroChunk = 64 << 10 // bytes per write in the write-zeroes fallback
)

// Disk is a backing file or block device. Its methods are safe for
// concurrent use.
//
// The capacity is the file size rounded down to whole sectors: a trailing
// partial sector is neither readable nor writable by the guest (and is left
// untouched).
type Disk struct {
	fd        int
	path      string
	readOnly  bool
	sectors   uint64
	blockSize uint32 // the file system's preferred I/O size, for discard alignment
	id        [IDBytes]byte
	punchHole bool        // FALLOC_FL_PUNCH_HOLE works (probed at open)
	zeroRange atomic.Bool // FALLOC_FL_ZERO_RANGE has not failed as unsupported
	zeros     []byte      // zeroChunk zero bytes for the write-zeroes fallback
}

// OpenDisk opens path, a regular file or block device, O_RDONLY when
// readOnly and O_RDWR otherwise. The file must hold at least one sector.
// The GET_ID serial is derived from the path (see ID).
//
// It locks the whole file for as long as it is open (see lockDisk): a
// writable disk exclusively, a read-only one shared. So a file is written
// by one disk at a time, in this process or any other, and read-only disks
// never see another VM's writes land under them. A file system without
// locks (some network file systems) is used unlocked.
func OpenDisk(path string, readOnly bool) (*Disk, error) {
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio-blk: open %s: %w", path, err)
	}
	d, err := newDisk(fd, path, readOnly)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

func newDisk(fd int, path string, readOnly bool) (*Disk, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("virtio-blk: stat %s: %w", path, err)
	}
	var size int64
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		size = st.Size
	case unix.S_IFBLK:
		end, err := unix.Seek(fd, 0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("virtio-blk: size of %s: %w", path, err)
		}
		size = end
	default:
		return nil, fmt.Errorf("virtio-blk: %s is not a regular file or block device", path)
	}
	if size < SectorSize {
		return nil, fmt.Errorf("virtio-blk: %s: %d bytes, need at least one %d-byte sector", path, size, SectorSize)
	}
	if err := lockDisk(fd, readOnly); err != nil {
		return nil, fmt.Errorf("virtio-blk: %s: %w", path, err)
	}
	d := &Disk{
		fd:        fd,
		path:      path,
		readOnly:  readOnly,
		sectors:   uint64(size) / SectorSize,
		blockSize: uint32(max(st.Blksize, SectorSize)),
		id:        diskID(path),
	}
	if !readOnly {
		d.zeros = make([]byte, zeroChunk)
		d.zeroRange.Store(true)
		// Punching a hole past the end of a regular file changes nothing
		// and tells whether the file system supports it. Block devices
		// reject ranges past their end, so they get no discard.
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			d.punchHole = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, size, SectorSize) == nil
		}
	}
	return d, nil
}

// lockDisk takes an open file description lock (F_OFD_SETLK) on the whole
// file: a write lock for a writable disk, a read lock for a read-only one.
// Such a lock belongs to this descriptor, conflicts with the same file
// opened again in this process as much as in another, and is released
// when the descriptor is closed, also when the process dies. QEMU holds
// read locks of this kind on bytes of the images it has open, so a
// writable disk here also refuses a file a QEMU is using.
func lockDisk(fd int, readOnly bool) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart} // Start 0, Len 0: the whole file
	if readOnly {
		lk.Type = unix.F_RDLCK
	}
	err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		if readOnly {
			return fmt.Errorf("%w; it is open writable elsewhere", ErrInUse)
		}
		return fmt.Errorf("%w; two VMs writing one disk would corrupt it (readonly=on everywhere lets them share it)", ErrInUse)
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return nil // the file system has no such locks
	}
	return fmt.Errorf("lock: %w", err)
}

// diskID makes the GET_ID string from the path's base name: printable ASCII
// kept, anything else replaced by '_'. A name longer than 20 bytes keeps
// its first 11 bytes, then '~' and 8 hex digits of a hash of the full path,
// so distinct long names stay distinct.
func diskID(path string) [IDBytes]byte {
	var id [IDBytes]byte
	name := []byte(filepath.Base(path))
	for i, b := range name {
		if b < 0x21 || b > 0x7e {
			name[i] = '_'
		}
	}
	if len(name) <= IDBytes {
		copy(id[:], name)
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(path))
	copy(id[:], fmt.Sprintf("%s~%08x", name[:11], h.Sum32()))
	return id
}

// Close closes the file.
func (d *Disk) Close() error {
	if err := unix.Close(d.fd); err != nil {
		return fmt.Errorf("virtio-blk: close %s: %w", d.path, err)
	}
	return nil
}

// Sectors returns the capacity in 512-byte sectors.
func (d *Disk) Sectors() uint64 { return d.sectors }

// ReadOnly reports whether the disk was opened read-only.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// ID returns the GET_ID string (NUL-padded).
func (d *Disk) ID() [IDBytes]byte { return d.id }

// CanDiscard reports whether Discard and unmapping write zeroes work.
func (d *Disk) CanDiscard() bool { return d.punchHole }

// BlockSize returns the file system's preferred I/O size in bytes (at
// least SectorSize).
func (d *Disk) BlockSize() uint32 { return d.blockSize }

// ReadAt fills bufs, in order, from the file at byte offset off with
// preadv(2). Anything short of every byte is an error.
func (d *Disk) ReadAt(bufs [][]byte, off uint64) error {
	if err := d.vectored(bufs, off, unix.Preadv); err != nil {
		return fmt.Errorf("virtio-blk: read %s at %d: %w", d.path, off, err)
	}
	return nil
}

// WriteAt writes bufs, in order, to the file at byte offset off with
// pwritev(2).
func (d *Disk) WriteAt(bufs [][]byte, off uint64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	if err := d.vectored(bufs, off, unix.Pwritev); err != nil {
		return fmt.Errorf("virtio-blk: write %s at %d: %w", d.path, off, err)
	}
	return nil
}

func (d *Disk) vectored(bufs [][]byte, off uint64, op func(int, [][]byte, int64) (int, error)) error {
	// Own copy without empty buffers: it is advanced in place below.
	iov := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, b)
		}
	}
	for len(iov) > 0 {
		if off > 1<<63-1 {
			return fmt.Errorf("offset %d overflows", off)
		}
		n, err := op(d.fd, iov[:min(len(iov), iovMax)], int64(off))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF // the file shrank under us
		}
		off += uint64(n)
		for n > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
			} else {
				iov[0] = iov[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// Flush makes completed writes durable with fdatasync(2).
func (d *Disk) Flush() error {
	if err := unix.Fdatasync(d.fd); err != nil {
		return fmt.Errorf("virtio-blk: fdatasync %s: %w", d.path, err)
	}
	return nil
}

// Discard deallocates n bytes at off (FALLOC_FL_PUNCH_HOLE, keeping the
// size); later reads return zeros.
func (d *Disk) Discard(off, n uint64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	if !d.punchHole {
		return ErrNotSupported
	}
	if n == 0 {
		return nil
	}
	if err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return fmt.Errorf("virtio-blk: discard %s [%d+%d): %w", d.path, off, n, err)
	}
	return nil
}

// WriteZeroes makes n bytes at off read as zero. With unmap it may punch a
// hole; otherwise it uses FALLOC_FL_ZERO_RANGE and, where the file system
// lacks that, writes zeros.
func (d *Disk) WriteZeroes(off, n uint64, unmap bool) error {
	if d.readOnly {
		return ErrReadOnly
	}
	if n == 0 {
		return nil
	}
	if unmap && d.punchHole {
		return d.Discard(off, n)
	}
	if d.zeroRange.Load() {
		err := d.fallocate(unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("virtio-blk: zero range %s [%d+%d): %w", d.path, off, n, err)
		}
		d.zeroRange.Store(false)
	}
	for n > 0 {
		chunk := min(n, zeroChunk)
		if err := d.vectored([][]byte{d.zeros[:chunk]}, off, unix.Pwritev); err != nil {
			return fmt.Errorf("virtio-blk: write zeros %s at %d: %w", d.path, off, err)
		}
		off += chunk
		n -= chunk
	}
	return nil
}

func (d *Disk) fallocate(mode uint32, off, n uint64) error {
	if off > 1<<63-1 || n > 1<<63-1-off {
		return fmt.Errorf("range [%d+%d) overflows", off, n)
	}
	for {
		err := unix.Fallocate(d.fd, mode, int64(off), int64(n))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
