package stunclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
)

// fakeSTUN answers Binding requests on loopback as a STUN server behind
// which the client appears as mapped; with status set it answers that error
// instead. Before each answer it sends a decoy: a success for another
// transaction, and (when decoy is set) one from another socket. It returns
// its address.
func fakeSTUN(t *testing.T, mapped netip.Addr, status stun.ErrorCode, decoy *net.UDPConn) string {
	t.Helper()
	pc := turntest.ListenUDP(t)
	build := func(id [stun.TransactionIDSize]byte, from netip.AddrPort, ip netip.Addr) []byte {
		setters := []stun.Setter{stun.NewTransactionIDSetter(id)}
		if status != 0 {
			setters = append(setters, stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), status)
		} else {
			setters = append(setters, stun.BindingSuccess, &stun.XORMappedAddress{IP: ip.AsSlice(), Port: int(from.Port())})
		}
		resp, err := stun.Build(append(setters, stun.Fingerprint)...)
		if err != nil {
			return nil
		}
		return resp.Raw
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			wrong := req.TransactionID
			wrong[0] ^= 0xff
			liar := netip.MustParseAddr("198.51.100.66")
			_, _ = pc.WriteToUDPAddrPort(build(wrong, from, liar), from)
			if decoy != nil {
				_, _ = decoy.WriteToUDPAddrPort(build(req.TransactionID, from, liar), from)
			}
			_, _ = pc.WriteToUDPAddrPort(build(req.TransactionID, from, mapped), from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestPublicIP(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.77")
	loopback := netip.MustParseAddr("127.0.0.1")
	nat := fakeSTUN(t, public, 0, turntest.ListenUDP(t))
	failing := fakeSTUN(t, public, stun.CodeServerError, nil)

	ip, server, err := PublicIP(t.Context(), loopback, []string{failing, nat})
	if err != nil || ip != public || server != nat {
		t.Fatalf("PublicIP = %v, %q, %v; want %v from %s (after the failing server, ignoring decoys)", ip, server, err, public, nat)
	}
	// An IPv4-mapped local address is asked about as IPv4.
	if ip, err := Query(t.Context(), netip.AddrFrom16(loopback.As16()), nat); err != nil || ip != public {
		t.Errorf("Query from a mapped address = %v, %v; want %v", ip, err, public)
	}
	if _, err := Query(t.Context(), loopback, failing); err == nil || !strings.Contains(err.Error(), "answered") {
		t.Errorf("error response: err = %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	silent := turntest.ListenUDP(t).LocalAddr().String()
	_, _, err = PublicIP(ctx, loopback, []string{silent})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: err = %v, want one wrapping the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent server took %v despite a 300 ms context", d)
	}
	if _, _, err := PublicIP(t.Context(), loopback, nil); err == nil {
		t.Error("no servers: no error")
	}
	if _, _, err := PublicIP(t.Context(), loopback, []string{"no-port"}); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("bad server address: err = %v", err)
	}
}
