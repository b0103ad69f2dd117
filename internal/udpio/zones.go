package udpio

import (
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// maxZones bounds the zone cache: a host has few interfaces, and past this
// a lookup is answered without being cached.
const maxZones = 256

// Zones maps IPv6 scope IDs (interface indexes, as sockaddr_in6 carries
// them) to zone names (interface names, as netip.Addr carries them) and
// back, for link-local addresses on the data plane: net.InterfaceByIndex
// allocates and asks the kernel each time. Reads load an immutable map
// (lock-free, no allocation); a miss looks the interface up once and copies
// the map. An index without an interface (gone, or never there) is cached
// as its decimal form, which the net package accepts as a zone, so that no
// source address makes every packet look it up again. A renamed interface
// keeps its old name here until the process restarts. The zero value is
// empty and ready; a nil *Zones names nothing (every zone is "", every
// index 0).
type Zones struct {
	names   atomic.Pointer[map[uint32]string]
	indexes atomic.Pointer[map[string]uint32]
	mu      sync.Mutex // serialises writers
}

// Name returns the zone of scope ID idx ("" for 0). HOT once cached.
func (z *Zones) Name(idx uint32) string {
	if idx == 0 || z == nil {
		return ""
	}
	if m := z.names.Load(); m != nil {
		if n, ok := (*m)[idx]; ok {
			return n
		}
	}
	name := strconv.FormatUint(uint64(idx), 10)
	if ifc, err := net.InterfaceByIndex(int(idx)); err == nil {
		name = ifc.Name
	}
	z.store(idx, name)
	return name
}

// Index returns the scope ID of zone ("" and unknown names: 0). HOT once
// cached.
func (z *Zones) Index(zone string) uint32 {
	if zone == "" || z == nil {
		return 0
	}
	if m := z.indexes.Load(); m != nil {
		if i, ok := (*m)[zone]; ok {
			return i
		}
	}
	var idx uint32
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		idx = uint32(n)
	} else if ifc, err := net.InterfaceByName(zone); err == nil {
		idx = uint32(ifc.Index)
	}
	z.store(idx, zone)
	return idx
}

// store caches idx <-> name.
func (z *Zones) store(idx uint32, name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	names, indexes := z.names.Load(), z.indexes.Load()
	if (names != nil && len(*names) >= maxZones) || (indexes != nil && len(*indexes) >= maxZones) {
		return
	}
	nm, im := map[uint32]string{}, map[string]uint32{}
	if names != nil {
		nm = maps.Clone(*names)
	}
	if indexes != nil {
		im = maps.Clone(*indexes)
	}
	if idx != 0 {
		if _, ok := nm[idx]; !ok {
			nm[idx] = name
		}
	}
	im[name] = idx
	z.names.Store(&nm)
	z.indexes.Store(&im)
}
