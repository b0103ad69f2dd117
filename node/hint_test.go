package node

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// TestExternalIPHint: when no address can be advertised, the error says
// which flag fixes it, in the words it had before URL derivation moved to
// iceapi; other errors pass unchanged.
func TestExternalIPHint(t *testing.T) {
	bound := []relay.BoundListener{{Kind: relay.UDP, Addr: &net.UDPAddr{IP: net.IPv4zero, Port: 3478}}}
	_, err := iceapi.BoundURLs(bound, "", iceapi.HostPolicy{})
	if got, want := WithExternalIPHint(err).Error(), "listener on 0.0.0.0: no address to advertise: set --external-ip"; got != want {
		t.Errorf("no primary: %q, want %q", got, want)
	}
	failing := func() (netip.Addr, error) { return netip.Addr{}, errors.New("no route") }
	_, err = iceapi.BoundURLs(bound, "", iceapi.HostPolicy{Primary: failing})
	if got, want := WithExternalIPHint(err).Error(), "listener on 0.0.0.0: finding this host's address: no route (set --external-ip)"; got != want {
		t.Errorf("primary fails: %q, want %q", got, want)
	}
	other := errors.New("other")
	if WithExternalIPHint(other) != other || WithExternalIPHint(nil) != nil {
		t.Error("an error without NoAddressError was changed")
	}
}
