//go:build !linux

package relay

import "github.com/postern/postern/allocations"

// Elsewhere than Linux, relay sockets neither set DF nor read ICMP errors:
// an Allocate with DONT-FRAGMENT is answered 420 (RFC 8656 §7.2), a Send
// indication with it is discarded (§11.2), and ICMP errors from peers are
// not reported (§11.5 is not implemented there).

const dontFragmentSupported = false

// icmpReader is the relay loop's ICMP state; there is none here.
type icmpReader struct{}

func prepareRelaySocket(udpOut, bool) error { return nil }

func setDontFragment(*allocations.Allocation) error { return errDontFragment }
