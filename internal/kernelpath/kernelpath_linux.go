//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
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
	objs kernelpathObjects
	// counts is the counts array mapped into memory: the allocations'
	// counters are brought up to date every second from thousands of
	// bindings, which as lookups would be a system call each.
	countMem []byte

	mu    sync.Mutex
	slots map[Binding]uint32 // the binding's first slot (to peer; +1: to client)
	free  []uint32
	// attached are the program's attachments by interface index.
	attached map[int]attachment
}

type attachment struct {
	name string
	link link.Link
}

// egress is the interface of the route from src to dst, where the
// program sends the datagram when the receiving interface does not
// forward (the kernel's route lookup from the program needs it to); 0
// where there is no route, or dst is this host's: the relay's sockets
// serve those (a datagram from a card that would go from a relayed
// address to this host again is a martian, its source being local; one
// from this host's own sender leaves its checksum to the device).
func egress(src, dst netip.Addr) uint32 {
	if dst.IsLoopback() {
		return 0
	}
	routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil || len(routes) == 0 || routes[0].Type == unix.RTN_LOCAL {
		return 0
	}
	return uint32(routes[0].LinkIndex)
}

// Open loads the program and attaches it at TCX ingress of the named
// interfaces (every interface that is up when names is empty).
func Open(names []string) (*Path, error) {
	p := &Path{slots: map[Binding]uint32{}, attached: map[int]attachment{}}
	for i := uint32(0); i < MaxBindings; i++ {
		p.free = append(p.free, 2*(MaxBindings-1-i))
	}
	err := loadKernelpathObjects(&p.objs, nil)
	if err != nil {
		return nil, fmt.Errorf("kernelpath: load the eBPF program (needs root, or CAP_BPF and CAP_NET_ADMIN, and a kernel with its BTF, /sys/kernel/btf/vmlinux): %w", err)
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
		if err := p.attach(ifc); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// attach attaches the program to ifc. p.mu held, or p not yet shared.
func (p *Path) attach(ifc net.Interface) error {
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: p.objs.PosternRelay, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("kernelpath: attach at TCX ingress of %s (needs Linux 6.6): %w", ifc.Name, err)
	}
	p.attached[ifc.Index] = attachment{ifc.Name, l}
	return nil
}

// AttachNew attaches the program to the interfaces that are up and not
// yet attached (they came up, or were created, since), and lets go of
// the attachments of interfaces that are gone; it returns the names of
// those it attached.
func (p *Path) AttachNew() ([]string, error) {
	up, err := interfaces(nil)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.countMem == nil {
		return nil, errors.New("kernelpath: closed")
	}
	present := map[int]bool{}
	var names []string
	var errs []error
	for _, ifc := range up {
		present[ifc.Index] = true
		if _, ok := p.attached[ifc.Index]; ok {
			continue
		}
		if err := p.attach(ifc); err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, ifc.Name)
	}
	for index, a := range p.attached {
		if present[index] {
			continue
		}
		if _, err := net.InterfaceByIndex(index); err != nil { // gone, not just down
			_ = a.link.Close()
			delete(p.attached, index)
		}
	}
	return names, errors.Join(errs...)
}

// Interfaces are the names of the interfaces the program is attached to.
func (p *Path) Interfaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.attached))
	for _, a := range p.attached {
		names = append(names, a.name)
	}
	slices.Sort(names)
	return names
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
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for index, a := range p.attached {
		errs = append(errs, a.link.Close())
		delete(p.attached, index)
	}
	if p.countMem != nil {
		errs = append(errs, unix.Munmap(p.countMem))
		p.countMem = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// Supported reports whether b can take the kernel path: one family
// throughout, IPv4 (v4-mapped addresses count as IPv4) or IPv6. A binding
// whose client and peer sides differ in family needs the IP header
// replaced by the other family's, which the program does not do.
func Supported(b Binding) bool {
	v4 := b.Client.Addr().Unmap().Is4()
	for _, ap := range [...]netip.AddrPort{b.Client, b.Server, b.Relay, b.Peer} {
		if a := ap.Addr().Unmap(); !a.IsValid() || a.Is4() != v4 || a.Zone() != "" {
			return false
		}
	}
	return true
}

// Install puts b in the tables, or moves its expiry, until until (wall
// clock). Its counts go on from where they were.
func (p *Path) Install(b Binding, until time.Time) error {
	if !Supported(b) {
		return fmt.Errorf("kernelpath: binding %v -> %v: the client's and the peer's sides are not of one family", b.Client, b.Peer)
	}
	expires, err := monotonic(until)
	if err != nil {
		return err
	}
	// Looked up at every install (each request that syncs the
	// allocation), so that a route's change is followed.
	peerOif, clientOif := egress(b.Relay.Addr().Unmap(), b.Peer.Addr().Unmap()), egress(b.Server.Addr().Unmap(), b.Client.Addr().Unmap())
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
	var errPeer, errClient error
	if is4(b) {
		pk, pv := toPeer(b, slot, expires, peerOif)
		ck, cv := toClient(b, slot+1, expires, clientOif)
		if errPeer = p.objs.ToPeer.Put(&pk, &pv); errPeer == nil {
			errClient = p.objs.ToClient.Put(&ck, &cv)
		}
	} else {
		pk, pv := toPeer6(b, slot, expires, peerOif)
		ck, cv := toClient6(b, slot+1, expires, clientOif)
		if errPeer = p.objs.ToPeer6.Put(&pk, &pv); errPeer == nil {
			errClient = p.objs.ToClient6.Put(&ck, &cv)
		}
	}
	if errPeer != nil {
		p.remove(b, slot)
		return fmt.Errorf("kernelpath: install %v -> %v: %w", b.Client, b.Peer, errPeer)
	}
	if errClient != nil {
		p.remove(b, slot)
		return fmt.Errorf("kernelpath: install %v -> %v: %w", b.Peer, b.Client, errClient)
	}
	return nil
}

func is4(b Binding) bool { return b.Client.Addr().Unmap().Is4() }

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
	if is4(b) {
		pk, _ := toPeer(b, slot, 0, 0)
		ck, _ := toClient(b, slot+1, 0, 0)
		_ = p.objs.ToPeer.Delete(&pk)
		_ = p.objs.ToClient.Delete(&ck)
		return
	}
	pk, _ := toPeer6(b, slot, 0, 0)
	ck, _ := toClient6(b, slot+1, 0, 0)
	_ = p.objs.ToPeer6.Delete(&pk)
	_ = p.objs.ToClient6.Delete(&ck)
}

func (p *Path) release(b Binding, slot uint32) {
	delete(p.slots, b)
	p.free = append(p.free, slot)
}

func toPeer(b Binding, slot uint32, expires uint64, oif uint32) (kernelpathToPeerKey, kernelpathToPeerVal) {
	return kernelpathToPeerKey{
			ClientIp: ip4(b.Client), ServerIp: ip4(b.Server),
			ClientPort: port(b.Client), ServerPort: port(b.Server), Channel: b.Channel,
		}, kernelpathToPeerVal{
			RelayIp: ip4(b.Relay), PeerIp: ip4(b.Peer),
			RelayPort: port(b.Relay), PeerPort: port(b.Peer), Slot: slot, Oif: oif, Expires: expires,
		}
}

func toClient(b Binding, slot uint32, expires uint64, oif uint32) (kernelpathToClientKey, kernelpathToClientVal) {
	return kernelpathToClientKey{
			RelayIp: ip4(b.Relay), PeerIp: ip4(b.Peer), RelayPort: port(b.Relay), PeerPort: port(b.Peer),
		}, kernelpathToClientVal{
			ServerIp: ip4(b.Server), ClientIp: ip4(b.Client),
			ServerPort: port(b.Server), ClientPort: port(b.Client), Channel: b.Channel, Slot: slot,
			Oif: oif, Expires: expires,
		}
}

func toPeer6(b Binding, slot uint32, expires uint64, oif uint32) (kernelpathToPeer6Key, kernelpathToPeer6Val) {
	return kernelpathToPeer6Key{
			ClientIp: ip6(b.Client), ServerIp: ip6(b.Server),
			ClientPort: port(b.Client), ServerPort: port(b.Server), Channel: b.Channel,
		}, kernelpathToPeer6Val{
			RelayIp: ip6(b.Relay), PeerIp: ip6(b.Peer),
			RelayPort: port(b.Relay), PeerPort: port(b.Peer), Slot: slot, Oif: oif, Expires: expires,
		}
}

func toClient6(b Binding, slot uint32, expires uint64, oif uint32) (kernelpathToClient6Key, kernelpathToClient6Val) {
	return kernelpathToClient6Key{
			RelayIp: ip6(b.Relay), PeerIp: ip6(b.Peer), RelayPort: port(b.Relay), PeerPort: port(b.Peer),
		}, kernelpathToClient6Val{
			ServerIp: ip6(b.Server), ClientIp: ip6(b.Client),
			ServerPort: port(b.Server), ClientPort: port(b.Client), Channel: b.Channel, Slot: slot,
			Oif: oif, Expires: expires,
		}
}

// ip6 is ap's IPv6 address as the program reads it: four words of
// network byte order.
func ip6(ap netip.AddrPort) [4]uint32 {
	a := ap.Addr().As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(a[4*i:])
	}
	return w
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
