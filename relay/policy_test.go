package relay_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// TestPolicyReloadStopsPeerToClient: after a reload that denies a peer,
// what it sends to the relayed address no longer reaches the client,
// although the permission and the channel made before the reload are
// still live; the drops are counted as policy drops.
func TestPolicyReloadStopsPeerToClient(t *testing.T) {
	for _, channel := range []bool{false, true} {
		name := map[bool]string{false: "data indication", true: "channel"}[channel]
		t.Run(name, func(t *testing.T) {
			s := startServer(t)
			c := newRawClient(t, s.addrs[relay.UDP])
			relayed := c.allocate()
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
			if channel {
				wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4010), stunPeer(peerAP)), 0)
			}
			// received reports whether the client gets what the peer sends.
			received := func(msg string) bool {
				t.Helper()
				if _, err := peer.WriteToUDPAddrPort([]byte(msg), relayed); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 2048)
				_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.conn.Read(buf)
				if err != nil {
					return false
				}
				if channel {
					_, payload, err := proto.ParseChannelData(buf[:n])
					return err == nil && string(payload) == msg
				}
				m := &stun.Message{Raw: buf[:n]}
				var data proto.Data
				return m.Decode() == nil && data.GetFrom(m) == nil && string(data) == msg
			}
			if !received("before") {
				t.Fatal("the permitted peer's datagram did not reach the client before the reload")
			}
			s.SetPolicy(auth.NewPeerPolicy(nil, nil)) // loopback denied again
			if received("after") {
				t.Fatal("a peer the reloaded policy denies still reaches the client")
			}
			if d := s.Stats().Drops[relay.DropPolicy.String()]; d != 1 {
				t.Errorf("policy drops = %d, want 1", d)
			}
		})
	}
}
