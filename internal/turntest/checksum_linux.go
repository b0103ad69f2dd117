package turntest

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool commands (linux/ethtool.h) for the transmit checksum offload.
const (
	ethtoolGetTxCsum = 0x16
	ethtoolSetTxCsum = 0x17
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func txChecksum(name string, set bool, on uint32) (uint32, error) { //nolint:unparam // get is for a caller to come
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: ethtoolGetTxCsum}
	if set {
		v = ethtoolValue{cmd: ethtoolSetTxCsum, data: on}
	}
	var ifr ifreqData
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return 0, errno
	}
	return v.data, nil
}

// DisableTxChecksum turns the transmit checksum offload of interface
// name (in the calling thread's network namespace) off, as `ethtool -K
// name tx off` would: senders over it then compute their UDP checksums
// themselves, as a datagram received from a network card carries,
// instead of leaving them to the device (CHECKSUM_PARTIAL, what veth
// otherwise hands on). For an interface of a test's own network
// namespace, which goes with it; loopback cannot change it.
func DisableTxChecksum(name string) error {
	if _, err := txChecksum(name, true, 0); err != nil {
		return fmt.Errorf("turn off the transmit checksum offload of %s: %w", name, err)
	}
	return nil
}
