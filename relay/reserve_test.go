package relay_test

import (
	"testing"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// TestReservationsCountAgainstQuotas: the port an EVEN-PORT request
// reserves is a relay socket held for 30 s, so it counts against the
// owner's quotas like an allocation. Reserving and deleting in a loop used
// to hold one more socket per round, beyond every quota; now the rounds
// stop at the quota, and a redeemed token counts once, as the allocation
// made with it.
func TestReservationsCountAgainstQuotas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quota func(*relay.Config)
		code  stun.ErrorCode
	}{
		{"user", func(c *relay.Config) { c.UserQuota = 2 }, stun.CodeAllocQuotaReached},
		{"ip", func(c *relay.Config) { c.IPQuota = 2 }, stun.CodeAllocQuotaReached},
		{"total", func(c *relay.Config) { c.TotalQuota = 2 }, stun.CodeInsufficientCapacity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.quota)
			c := newRawClient(t, s.addrs[relay.UDP])
			const rounds = 40
			reserved := 0
			for i := range rounds {
				resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.EvenPort{ReservePort: true})
				if resp.Type.Class != stun.ClassSuccessResponse {
					wantCode(t, "refused reservation", resp, tc.code)
					continue
				}
				if i > 0 {
					t.Errorf("round %d: reserved again while the first reservation holds a quota slot", i)
				}
				reserved++
				wantCode(t, "Refresh 0", c.authed(stun.MethodRefresh, proto.Lifetime(0)), 0)
			}
			if reserved != 1 {
				t.Fatalf("%d of %d reserve-then-delete rounds reserved a port with a quota of 2, want 1", reserved, rounds)
			}
			// The reservation holds one slot of two: one plain allocation
			// fits, a second does not.
			wantCode(t, "Allocate beside the reservation", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
			other := newRawClient(t, s.addrs[relay.UDP])
			wantCode(t, "Allocate past the quota", other.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), tc.code)
		})
	}

	t.Run("redeemed", func(t *testing.T) {
		s := startServer(t, withQuota(2))
		rtp := newRawClient(t, s.addrs[relay.UDP])
		resp := rtp.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), proto.EvenPort{ReservePort: true})
		wantCode(t, "Allocate EVEN-PORT R=1", resp, 0)
		var token proto.ReservationToken
		if err := token.GetFrom(resp); err != nil {
			t.Fatalf("no RESERVATION-TOKEN: %v", err)
		}
		rtcp := newRawClient(t, s.addrs[relay.UDP])
		wantCode(t, "Allocate with the token", rtcp.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP), token), 0)
		third := newRawClient(t, s.addrs[relay.UDP])
		wantCode(t, "a third allocation", third.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeAllocQuotaReached)
		wantCode(t, "Refresh 0", rtcp.authed(stun.MethodRefresh, proto.Lifetime(0)), 0)
		wantCode(t, "after the redeemed one ended", third.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
	})
}
