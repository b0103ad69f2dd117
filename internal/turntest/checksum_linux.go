package turntest

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolSetTxCsum is ETHTOOL_STXCSUM (linux/ethtool.h): set the
// transmit checksum offload.
const ethtoolSetTxCsum = 0x17

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// DisableTxChecksum turns the transmit checksum offload of interface
// name (in the calling thread's network namespace) off, as `ethtool -K
// name tx off` would: senders over it then compute their UDP checksums
// themselves, as a datagram received from a network card carries,
// instead of leaving them to the device (CHECKSUM_PARTIAL, what veth
// otherwise hands on). For an interface of a test's own network
// namespace, which goes with it; loopback cannot change it.
func DisableTxChecksum(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("turn off the transmit checksum offload of %s: %w", name, err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: ethtoolSetTxCsum}
	var ifr ifreqData
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return fmt.Errorf("turn off the transmit checksum offload of %s: %w", name, errno)
	}
	return nil
}
