package allocations

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freeRange finds n consecutive free UDP ports on 127.0.0.1 below the
// kernel's ephemeral range (so tests binding port 0 elsewhere do not take
// them).
func freeRange(t *testing.T, n int) PortRange {
	t.Helper()
	for range 100 {
		low := uint16(20000 + rand.IntN(10000))
		var conns []*net.UDPConn
		for i := range n {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, low+uint16(i))))
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		if len(conns) == n {
			return PortRange{Low: low, High: low + uint16(n) - 1}
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return PortRange{}
}

// marked reports whether the pool believes port is in use on ip.
func (p *PortPool) marked(ip netip.Addr, port uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := p.used[ip]
	idx := int(port - p.r.Low)
	return used != nil && used[idx/64]&(1<<(idx%64)) != 0
}

func localPort(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr string // substring; "" means success
	}{
		{"49152-65535", PortRange{49152, 65535}, ""},
		{"1-1", PortRange{1, 1}, ""},
		{"5000", PortRange{5000, 5000}, ""},
		{" 1000 - 2000 ", PortRange{1000, 2000}, ""},
		{"0-100", PortRange{}, "port 0"},
		{"100-0", PortRange{}, "port 0"},
		{"2000-1000", PortRange{}, "above high port"},
		{"abc", PortRange{}, "not a number"},
		{"1000-x", PortRange{}, "not a number"},
		{"1000-70000", PortRange{}, "not a number"},
		{"-5", PortRange{}, "not a number"},
		{"", PortRange{}, "not a number"},
		{"1-2-3", PortRange{}, "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePortRange(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParsePortRange = %v, %v; want %v", got, err, tt.want)
				}
				if want := strings.ReplaceAll(tt.in, " ", ""); strings.Contains(want, "-") && got.String() != want {
					t.Fatalf("String = %q, want %q", got.String(), want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "allocations:") {
				t.Fatalf("ParsePortRange error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	if s := (PortRange{49152, 65535}).String(); s != "49152-65535" {
		t.Fatalf("String = %q", s)
	}
	if n := (PortRange{49152, 65535}).Len(); n != 16384 {
		t.Fatalf("Len = %d", n)
	}
}

func TestPortPool(t *testing.T) {
	r := freeRange(t, 3)
	pool := NewPortPool(r)
	seen := map[uint16]*net.UDPConn{}
	for range 3 {
		c, err := pool.ListenUDP(loopback)
		if err != nil {
			t.Fatalf("ListenUDP: %v", err)
		}
		p := localPort(c)
		if !r.Contains(p) || seen[p] != nil {
			t.Fatalf("port %d outside %v or handed out twice", p, r)
		}
		seen[p] = c
	}
	_, err := pool.ListenUDP(loopback)
	if !errors.Is(err, ErrNoPorts) {
		t.Fatalf("4th ListenUDP = %v, want ErrNoPorts", err)
	}
	if msg := err.Error(); !strings.Contains(msg, r.String()) || !strings.Contains(msg, "--relay-ports") {
		t.Fatalf("error %q does not name the range and the fix", msg)
	}

	// Close and release one: it is handed out again.
	c := seen[r.Low+1]
	c.Close()
	pool.Release(netip.AddrPortFrom(loopback, r.Low+1))
	c2, err := pool.ListenUDP(loopback)
	if err != nil {
		t.Fatalf("ListenUDP after Release: %v", err)
	}
	if localPort(c2) != r.Low+1 {
		t.Fatalf("got port %d, want the released %d", localPort(c2), r.Low+1)
	}
	seen[r.Low+1] = c2

	// Close one without Release: the pool still finds it (probing marked ports last).
	seen[r.High].Close()
	c3, err := pool.ListenUDP(loopback)
	if err != nil {
		t.Fatalf("ListenUDP after close without Release: %v", err)
	}
	if localPort(c3) != r.High {
		t.Fatalf("got port %d, want %d", localPort(c3), r.High)
	}
	seen[r.High] = c3
	for _, c := range seen {
		c.Close()
	}
}

func TestPortPoolSkipsTakenPorts(t *testing.T) {
	r := freeRange(t, 3)
	other, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, r.Low+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pool := NewPortPool(r)
	for range 2 {
		c, err := pool.ListenUDP(loopback)
		if err != nil {
			t.Fatalf("ListenUDP: %v", err)
		}
		defer c.Close()
		if localPort(c) == r.Low+1 {
			t.Fatal("handed out a port another socket holds")
		}
	}
	if _, err := pool.ListenUDP(loopback); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("3rd ListenUDP = %v, want ErrNoPorts", err)
	}
}

func TestPortPoolErrors(t *testing.T) {
	tests := []struct {
		name string
		r    PortRange
		ip   netip.Addr
	}{
		{"invalid range", PortRange{Low: 10, High: 5}, loopback},
		{"zero range", PortRange{}, loopback},
		{"no address", PortRange{Low: 20000, High: 20001}, netip.Addr{}},
		// Not an address of this host: EADDRNOTAVAIL is returned, not skipped.
		{"foreign address", PortRange{Low: 20000, High: 20001}, netip.MustParseAddr("192.0.2.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewPortPool(tt.r).ListenUDP(tt.ip)
			if err == nil {
				c.Close()
				t.Fatal("ListenUDP succeeded")
			}
			if errors.Is(err, ErrNoPorts) {
				t.Fatalf("error %v wraps ErrNoPorts; want the real cause", err)
			}
		})
	}
}
