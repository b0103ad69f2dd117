//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// MaxBindings is how many bindings the tables hold.
const MaxBindings = 1 << 16

// ErrFull is Install's error when the tables hold MaxBindings.
var ErrFull = errors.New("kernelpath: tables full")

// Binding is one channel of one UDP allocation (IPv4): Client sends
// ChannelData on Channel to the server's address Server, which relays it
// from Relay to Peer, and Peer's datagrams to Relay back.
type Binding struct {
	Client, Server netip.AddrPort
	Relay, Peer    netip.AddrPort
	Channel        uint16
}

// Count is what one direction of a binding relayed: packets and payload
// bytes.
type Count struct{ Packets, Bytes uint64 }

// Path is the loaded program, its tables and its attachments.
type Path struct {
	objs  kernelpathObjects
	links []link.Link
	// counts is the counts array mapped into memory: the allocations'
	// counters are brought up to date every second from thousands of
	// bindings, which as lookups would be a system call each.
	countMem []byte

	mu    sync.Mutex
	slots map[Binding]uint32 // the binding's first slot (to peer; +1: to client)
	free  []uint32
	// own are this host's addresses, read at most every ownTTL: a
	// datagram to one leaves through the loopback interface.
	own     map[netip.Addr]bool
	ownRead time.Time
}

// ownTTL is how long the host's address list is trusted.
const ownTTL = 5 * time.Second

// local reports whether ip is this host's. p.mu held.
func (p *Path) local(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	if time.Since(p.ownRead) > ownTTL {
		p.ownRead = time.Now()
		clear(p.own)
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						p.own[ip.Unmap()] = true
					}
				}
			}
		}
	}
	return p.own[ip]
}

// Open loads the program and attaches it at TCX ingress of the named
// interfaces (every interface that is up when names is empty).
func Open(names []string) (*Path, error) {
	p := &Path{slots: map[Binding]uint32{}, own: map[netip.Addr]bool{}}
	for i := uint32(0); i < MaxBindings; i++ {
		p.free = append(p.free, 2*(MaxBindings-1-i))
	}
	err := loadKernelpathObjects(&p.objs, nil)
	if err != nil {
		return nil, fmt.Errorf("kernelpath: load the eBPF program (needs root, or CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	size := int(p.objs.Counts.MaxEntries()) * int(unsafe.Sizeof(kernelpathCount{}))
	if p.countMem, err = unix.Mmap(p.objs.Counts.FD(), 0, size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		p.Close()
		return nil, fmt.Errorf("kernelpath: map the counts into memory: %w", err)
	}
	ifaces, err := interfaces(names)
	if err != nil {
		p.Close()
		return nil, err
	}
	for _, ifc := range ifaces {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: p.objs.PosternRelay, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("kernelpath: attach at TCX ingress of %s (needs Linux 6.6): %w", ifc.Name, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

func interfaces(names []string) ([]net.Interface, error) {
	if len(names) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("kernelpath: list interfaces: %w", err)
		}
		var up []net.Interface
		for _, ifc := range all {
			if ifc.Flags&net.FlagUp != 0 {
				up = append(up, ifc)
			}
		}
		return up, nil
	}
	var out []net.Interface
	for _, n := range names {
		ifc, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("kernelpath: interface %q: %w", n, err)
		}
		out = append(out, *ifc)
	}
	return out, nil
}

// Close detaches the program and frees its tables.
func (p *Path) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.countMem != nil {
		errs = append(errs, unix.Munmap(p.countMem))
		p.countMem = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// Supported reports whether b can take the kernel path: IPv4 throughout.
func Supported(b Binding) bool {
	for _, ap := range [...]netip.AddrPort{b.Client, b.Server, b.Relay, b.Peer} {
		if !ap.Addr().Unmap().Is4() {
			return false
		}
	}
	return true
}

// Install puts b in the tables, or moves its expiry, until until (wall
// clock). Its counts go on from where they were.
func (p *Path) Install(b Binding, until time.Time) error {
	if !Supported(b) {
		return fmt.Errorf("kernelpath: binding %v -> %v: not IPv4", b.Client, b.Peer)
	}
	expires, err := monotonic(until)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	slot, ok := p.slots[b]
	if !ok {
		n := len(p.free)
		if n == 0 {
			return ErrFull
		}
		slot = p.free[n-1]
		p.free = p.free[:n-1]
		p.slots[b] = slot
		zero := kernelpathCount{}
		for _, s := range [...]uint32{slot, slot + 1} {
			if err := p.objs.Counts.Put(s, &zero); err != nil {
				p.release(b, slot)
				return fmt.Errorf("kernelpath: clear counts: %w", err)
			}
		}
	}
	pk, pv := p.toPeer(b, slot, expires)
	ck, cv := p.toClient(b, slot+1, expires)
	if err := p.objs.ToPeer.Put(&pk, &pv); err != nil {
		p.remove(b, slot)
		return fmt.Errorf("kernelpath: install %v -> %v: %w", b.Client, b.Peer, err)
	}
	if err := p.objs.ToClient.Put(&ck, &cv); err != nil {
		p.remove(b, slot)
		return fmt.Errorf("kernelpath: install %v -> %v: %w", b.Peer, b.Client, err)
	}
	return nil
}

// Remove takes b out of the tables and returns what it relayed since it
// was installed.
func (p *Path) Remove(b Binding) (toPeer, toClient Count, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slot, ok := p.slots[b]
	if !ok {
		return Count{}, Count{}, nil
	}
	p.remove(b, slot)
	toPeer, toClient, err = p.counts(slot)
	p.release(b, slot)
	return toPeer, toClient, err
}

// Counts returns what b relayed since it was installed.
func (p *Path) Counts(b Binding) (toPeer, toClient Count, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slot, ok := p.slots[b]
	if !ok {
		return Count{}, Count{}, nil
	}
	return p.counts(slot)
}

// Len is how many bindings the tables hold.
func (p *Path) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots)
}

func (p *Path) counts(slot uint32) (toPeer, toClient Count, err error) {
	if p.countMem == nil {
		return Count{}, Count{}, errors.New("kernelpath: closed")
	}
	return p.count(slot), p.count(slot + 1), nil
}

// count reads slot's count, each word atomically (the program adds to
// them with atomic instructions).
func (p *Path) count(slot uint32) Count {
	c := (*kernelpathCount)(unsafe.Pointer(&p.countMem[int(slot)*int(unsafe.Sizeof(kernelpathCount{}))]))
	return Count{atomic.LoadUint64(&c.Packets), atomic.LoadUint64(&c.Bytes)}
}

// remove deletes b's entries (either may be missing).
func (p *Path) remove(b Binding, slot uint32) {
	pk, _ := p.toPeer(b, slot, 0)
	ck, _ := p.toClient(b, slot+1, 0)
	_ = p.objs.ToPeer.Delete(&pk)
	_ = p.objs.ToClient.Delete(&ck)
}

func (p *Path) release(b Binding, slot uint32) {
	delete(p.slots, b)
	p.free = append(p.free, slot)
}

func (p *Path) toPeer(b Binding, slot uint32, expires uint64) (kernelpathToPeerKey, kernelpathToPeerVal) {
	return kernelpathToPeerKey{
			ClientIp: ip4(b.Client), ServerIp: ip4(b.Server),
			ClientPort: port(b.Client), ServerPort: port(b.Server), Channel: b.Channel,
		}, kernelpathToPeerVal{
			RelayIp: ip4(b.Relay), PeerIp: ip4(b.Peer),
			RelayPort: port(b.Relay), PeerPort: port(b.Peer), Slot: slot, Local: flag(p.local(b.Peer.Addr())), Expires: expires,
		}
}

func (p *Path) toClient(b Binding, slot uint32, expires uint64) (kernelpathToClientKey, kernelpathToClientVal) {
	return kernelpathToClientKey{
			RelayIp: ip4(b.Relay), PeerIp: ip4(b.Peer), RelayPort: port(b.Relay), PeerPort: port(b.Peer),
		}, kernelpathToClientVal{
			ServerIp: ip4(b.Server), ClientIp: ip4(b.Client),
			ServerPort: port(b.Server), ClientPort: port(b.Client), Channel: b.Channel, Slot: slot,
			Local: flag(p.local(b.Client.Addr())), Expires: expires,
		}
}

func flag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// ip4 is ap's IPv4 address as the program reads it: network byte order
// in a host-order word.
func ip4(ap netip.AddrPort) uint32 {
	a := ap.Addr().Unmap().As4()
	return binary.NativeEndian.Uint32(a[:])
}

// port is ap's port in network byte order, as the program reads it.
func port(ap netip.AddrPort) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], ap.Port())
	return binary.NativeEndian.Uint16(b[:])
}

// monotonic is until on CLOCK_MONOTONIC, the program's clock
// (bpf_ktime_get_ns), in nanoseconds; 0 if it is past.
func monotonic(until time.Time) (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("kernelpath: read the monotonic clock: %w", err)
	}
	left := time.Until(until)
	if left <= 0 {
		return 0, nil
	}
	return uint64(ts.Nano()) + uint64(left), nil
}
