package relay_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

// TestLargeClientHello: a ClientHello larger than the sniff buffer (4 KiB;
// here with many ALPN protocols, stun.turn among them) is still routed and
// served as TURN/TLS, on tls:// and tcp+tls:// listeners, as is one that
// fits.
func TestLargeClientHello(t *testing.T) {
	s := startServer(t)
	for _, n := range []int{20, 80} { // about 1.5 KiB and 6 KiB of ALPN
		protos := []string{"stun.turn"}
		for i := range n {
			protos = append(protos, fmt.Sprintf("x-padding-%03d-%s", i, strings.Repeat("p", 60)))
		}
		for _, kind := range []relay.ListenerKind{relay.TLS, relay.TCPTLS} {
			t.Run(fmt.Sprintf("%s/%d protocols", kind, n), func(t *testing.T) {
				addr := s.addrs[kind]
				d := &net.Dialer{Timeout: 5 * time.Second}
				c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos}) //nolint:gosec // self-signed
				if err != nil {
					t.Fatalf("TLS handshake with %d ALPN protocols: %v", len(protos), err)
				}
				if p := c.ConnectionState().NegotiatedProtocol; p != "stun.turn" {
					t.Fatalf("negotiated %q, want stun.turn", p)
				}
				allocateOver(t, c, addr)
			})
		}
	}
}
