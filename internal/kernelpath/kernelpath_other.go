//go:build !linux || !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package kernelpath

import (
	"errors"
	"net/netip"
	"time"
)

// Binding is one channel of one UDP allocation (see the Linux build).
type Binding struct {
	Client, Server netip.AddrPort
	Relay, Peer    netip.AddrPort
	Channel        uint16
}

// Count is what one direction of a binding relayed.
type Count struct{ Packets, Bytes uint64 }

// Path is unavailable here.
type Path struct{}

// Open fails: the kernel path is Linux's (eBPF, TCX).
func Open([]string) (*Path, error) {
	return nil, errors.New("kernelpath: needs Linux (eBPF at TCX ingress) on a little-endian machine")
}

// Supported reports false.
func Supported(Binding) bool { return false }

// Install fails.
func (*Path) Install(Binding, time.Time) error { return errors.New("kernelpath: unavailable") }

// Remove does nothing.
func (*Path) Remove(Binding) (Count, Count, error) { return Count{}, Count{}, nil }

// Counts reports nothing.
func (*Path) Counts(Binding) (Count, Count, error) { return Count{}, Count{}, nil }

// Len is 0.
func (*Path) Len() int { return 0 }

// Close does nothing.
func (*Path) Close() error { return nil }

// AttachNew does nothing.
func (*Path) AttachNew() ([]string, error) { return nil, nil }

// Interfaces is none.
func (*Path) Interfaces() []string { return nil }
