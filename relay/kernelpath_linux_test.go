package relay_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// kernelServer is a server with the kernel path; only root can load it.
func kernelServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the kernel path (eBPF) needs root")
	}
	s := startServer(t, append([]serverOption{func(c *relay.Config) { c.KernelPath = relay.KernelPathTC }}, opts...)...)
	if s.KernelBindings() < 0 {
		t.Fatal("kernel_path = tc started without the kernel path")
	}
	return s
}

// echoOnChannel sends payload n times as ChannelData on channel 0x4001,
// which peer must receive from relayed, each answered with "echo", which
// the client must receive as ChannelData.
func echoOnChannel(t *testing.T, c *rawClient, peer *net.UDPConn, relayed netip.AddrPort, payload []byte, n int) {
	t.Helper()
	buf := make([]byte, 2048)
	for range n {
		if _, err := c.conn.Write(channelFrame(0x4001, payload)); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:got], payload) || from != relayed {
			t.Fatalf("peer read %d bytes from %v (%v), want %d from %v", got, from, err, len(payload), relayed)
		}
		if _, err := peer.WriteToUDPAddrPort([]byte("echo"), relayed); err != nil {
			t.Fatal(err)
		}
		if got, want := c.read(), channelFrame(0x4001, []byte("echo")); !bytes.Equal(got, want) {
			t.Fatalf("client read %x, want %x", got, want)
		}
	}
}

func channelFrame(number uint16, payload []byte) []byte {
	b := make([]byte, proto.ChannelDataHeaderSize+len(payload))
	copy(proto.PutChannelData(b, number, len(payload), false)[proto.ChannelDataHeaderSize:], payload)
	return b
}

// TestKernelPathRelaysChannels: with kernel_path = tc, ChannelBind
// installs a bound channel's binding, whose ChannelData reaches the peer
// from the relayed address and whose peer's datagrams come back as
// ChannelData, counted (over loopback the senders leave their checksums
// to the device, so the sockets relay them: TestKernelPathOverTheNetwork
// has the kernel relay), while what the tables do not hold (a peer without
// permission) still meets the relay's checks; a reload that denies the
// peer and a deleted allocation take the bindings out at once.
func TestKernelPathRelaysChannels(t *testing.T) {
	s := kernelServer(t)
	c, relayed, peer := boundChannel(t, s)
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if n := s.KernelBindings(); n != 1 {
		t.Fatalf("%d kernel bindings after ChannelBind, want 1", n)
	}

	const n = 20
	payload := bytes.Repeat([]byte{0xa5}, 1200)
	buf := make([]byte, 2048)
	echoOnChannel(t, c, peer, relayed, payload, n)
	turntest.WaitFor(t, "the relaying counted", func() bool {
		st := s.Stats()
		return st.ToPeer.Packets == n && st.ToPeer.Bytes == n*1200 && st.ToClient.Packets == n && st.ToClient.Bytes == n*4
	})

	// Another port of the permitted IP has no channel: the relay sends
	// its datagram as a Data indication (RFC 8656 §11.3).
	other := turntest.ListenPeer(t)
	if _, err := other.WriteToUDPAddrPort([]byte("no channel"), relayed); err != nil {
		t.Fatal(err)
	}
	if from, data, ok := c.readDataIndication(2 * time.Second); !ok || string(data) != "no channel" || from != other.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("client got a Data indication %v from %v (%v), want \"no channel\" from %v", data, from, ok, other.LocalAddr())
	}

	s.SetPolicy(auth.NewPeerPolicy(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}))
	if k := s.KernelBindings(); k != 0 {
		t.Fatalf("%d kernel bindings after a reload denied the peer, want 0", k)
	}
	if _, err := c.conn.Write(channelFrame(0x4001, payload)); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, _, err := peer.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("denied peer got %d bytes", got)
	}
	s.SetPolicy(loopbackPolicy())
	wantCode(t, "ChannelBind again", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(peerAP)), 0)
	if k := s.KernelBindings(); k != 1 {
		t.Fatalf("%d kernel bindings after the policy allowed the peer again and a refresh, want 1", k)
	}

	wantCode(t, "Refresh LIFETIME 0", c.authed(stun.MethodRefresh, proto.Lifetime(0)), 0)
	if k := s.KernelBindings(); k != 0 {
		t.Fatalf("%d kernel bindings after the allocation was deleted, want 0", k)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("after delete"), relayed); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, err := c.conn.Read(buf); err == nil {
		t.Fatalf("client of a deleted allocation got %x", buf[:got])
	}
}

// TestKernelPathLeavesLimitedAllocations: an allocation with a bandwidth
// limit has every packet checked against it, so its channels stay in
// user space.
func TestKernelPathLeavesLimitedAllocations(t *testing.T) {
	s := kernelServer(t, func(c *relay.Config) { c.AllocationBandwidth = 1 << 20 })
	c, relayed, peer := boundChannel(t, s)
	if k := s.KernelBindings(); k != 0 {
		t.Fatalf("%d kernel bindings for a bandwidth-limited allocation, want 0", k)
	}
	if _, err := c.conn.Write(channelFrame(0x4001, []byte("user space"))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, from, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:got]) != "user space" || from != relayed {
		t.Fatalf("peer read %q from %v (%v)", buf[:got], from, err)
	}
}

// TestKernelPathFallsBack: where the program cannot attach (here: an
// interface that does not exist), kernel_path = tc refuses to start,
// naming the cause and the settings that start anyway, and auto starts
// without it, says why in a warning, and relays in user space.
func TestKernelPathFallsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel path (eBPF) needs root")
	}
	const missing = "postern-none0"
	cfg := relay.Config{
		Listeners: []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}}, ListenersExplicit: true,
		Auth: newAuth(t, 0), Policy: loopbackPolicy(), RelayIP: netip.MustParseAddr("127.0.0.1"), RelayPorts: testRelayPorts,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), KernelPath: relay.KernelPathTC, KernelPathInterfaces: []string{missing},
	}
	s, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = s.Start(ctx)
	if err == nil {
		t.Fatal("kernel_path = tc started without its interface")
	}
	if msg := err.Error(); !strings.Contains(msg, missing) || !strings.Contains(msg, `"auto"`) {
		t.Errorf("error %q: want the interface and the auto setting named", msg)
	}
	cancel() // a server that did not start has nothing to wait for

	var logs turntest.SyncBuffer
	srv := startServer(t, func(c *relay.Config) {
		c.KernelPath, c.KernelPathInterfaces = relay.KernelPathAuto, []string{missing}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if srv.KernelBindings() >= 0 {
		t.Fatal("auto loaded a kernel path on an interface that does not exist")
	}
	if out := logs.String(); !strings.Contains(out, "kernel path not loaded") || !strings.Contains(out, missing) {
		t.Errorf("no warning naming the cause in the log:\n%s", out)
	}
	c, relayed, peer := boundChannel(t, srv)
	if _, err := c.conn.Write(channelFrame(0x4001, []byte("user space"))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "user space" || from != relayed {
		t.Fatalf("peer got %q from %v (%v), want the datagram from %v", buf[:n], from, err, relayed)
	}
}

// TestKernelPathOverTheNetwork: a client and a peer on another host (a
// network namespace behind a veth pair, whose datagrams carry their
// checksums as a network card's do), over IPv4 and IPv6: the server
// installs the channel, the kernel relays both directions (its tables
// count every datagram), and the allocation's counters learn of them.
// Over loopback (the tests above) senders leave checksums to the device
// and the datagrams take the sockets instead.
func TestKernelPathOverTheNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel path (eBPF) needs root")
	}
	h := turntest.NewVethHost(t, 2)
	for _, v6 := range []bool{false, true} {
		here, there, family := h.Here4, h.There4, []stun.Setter(nil)
		if v6 {
			here, there, family = h.Here6, h.There6, []stun.Setter{proto.FamilyIPv6}
		}
		t.Run(map[bool]string{false: "IPv4", true: "IPv6"}[v6], func(t *testing.T) {
			s := startServer(t, func(c *relay.Config) {
				c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: netip.AddrPortFrom(here, 0).String()}}
				c.RelayIP = here
				c.Policy = auth.NewPeerPolicy([]netip.Prefix{netip.PrefixFrom(there, there.BitLen())}, nil)
				c.KernelPath, c.KernelPathInterfaces = relay.KernelPathTC, []string{h.Host}
			})
			var c *rawClient
			var peer *net.UDPConn
			h.Do(t, func() {
				c = newRawClient(t, s.addrs[relay.UDP])
				var err error
				if peer, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(there, 0))); err != nil {
					t.Fatal(err)
				}
			})
			t.Cleanup(func() { peer.Close() })
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			resp := c.authed(stun.MethodAllocate, append([]stun.Setter{proto.RequestedTransport(proto.ProtoUDP)}, family...)...)
			wantCode(t, "Allocate", resp, 0)
			relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
			if err != nil || relayed.Addr() != here {
				t.Fatalf("relayed address %v (%v), want one on %v", relayed, err, here)
			}
			wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(peerAP)), 0)
			if k := s.KernelBindings(); k != 1 {
				t.Fatalf("%d kernel bindings after ChannelBind, want 1", k)
			}
			// The relay's own first datagram to the peer (a Send
			// indication) teaches the kernel the peer's link address.
			c.sendTo(peerAP, []byte("first"))
			buf := make([]byte, 2048)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "first" {
				t.Fatalf("peer got %q (%v)", buf[:n], err)
			}

			const n = 10
			echoOnChannel(t, c, peer, relayed, bytes.Repeat([]byte{0x5a}, 1200), n)
			if toPeer, toClient := s.KernelRelayed(); toPeer != n || toClient != n {
				t.Fatalf("the kernel relayed %d to the peer and %d to the client, want %d each", toPeer, toClient, n)
			}
			turntest.WaitFor(t, "the kernel's relaying counted", func() bool {
				st := s.Stats()
				return st.ToPeer.Packets == n+1 && st.ToClient.Packets == n
			})
		})
	}
}
