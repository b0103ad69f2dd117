package node

import (
	"testing"

	"github.com/postern/postern/relay"
)

// TestSelftestPorts: the doors' ports follow the listeners.
func TestSelftestPorts(t *testing.T) {
	for _, tc := range []struct {
		listen           []relay.ListenSpec
		turn, turns, alt int
	}{
		{relay.DefaultListeners(), 3478, 5349, 443},
		{[]relay.ListenSpec{{Kind: relay.UDP, Addr: ":8443"}, {Kind: relay.TCPTLS, Addr: ":8443"}, {Kind: relay.TCP, Addr: "[::1]:3479"}}, 3479, 0, 8443},
		{[]relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}}, 0, 0, 0},
	} {
		turn, turns, alt := selftestPorts(tc.listen)
		if turn != tc.turn || turns != tc.turns || alt != tc.alt {
			t.Errorf("%v: %d %d %d, want %d %d %d", tc.listen, turn, turns, alt, tc.turn, tc.turns, tc.alt)
		}
	}
}
