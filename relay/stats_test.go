package relay

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
)

// benchServer is a Server whose table holds n allocations (without relay
// sockets), each with one permission and one channel binding, for measuring
// what a metrics scrape costs.
func benchServer(b *testing.B, n int) *Server {
	b.Helper()
	a, err := auth.New(auth.Config{Realm: "r", Secrets: []string{"s"}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Auth: a, Policy: auth.NewPeerPolicy(nil, nil), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		al := &allocations.Allocation{
			FiveTuple: allocations.FiveTuple{Client: client, Server: netip.MustParseAddrPort("192.0.2.1:3478"), Transport: allocations.UDP},
			Username:  "u", User: "u",
		}
		if err := s.table.Create(al, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := al.BindChannel(0x4000, netip.MustParseAddrPort("198.51.100.1:5000"), now); err != nil {
			b.Fatal(err)
		}
		s.stats.allocationCreated(al.FiveTuple)
	}
	b.Cleanup(s.table.Close)
	return s
}

// BenchmarkStats measures one Stats call (one /metrics scrape's share of
// the postern_ metrics) over 10 000 allocations.
func BenchmarkStats(b *testing.B) {
	s := benchServer(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		if st := s.Stats(); st.AllocationsActive != 10000 || st.Channels != 10000 {
			b.Fatalf("stats %+v", st)
		}
	}
}

func TestMethodNames(t *testing.T) {
	for i, m := range requestMethods {
		if got := methodName(i); got != m.String() {
			t.Errorf("methodName(%d) = %q, want %q", i, got, m.String())
		}
	}
	if got := methodName(methodIndex(0x0fff)); got != "other" {
		t.Errorf("unknown method named %q, want other", got)
	}
	// Counting a request or an error answer allocates nothing (after the
	// first error of its kind): it runs for every request.
	var s stats
	s.requestError(requestMethods[1], 401)
	if n := testing.AllocsPerRun(100, func() {
		s.request(requestMethods[1])
		s.requestError(requestMethods[1], 401)
	}); n != 0 {
		t.Errorf("counting a request allocates %v times, want 0", n)
	}
}
