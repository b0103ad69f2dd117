package relay_test

import (
	"net"
	"sync"
	"testing"

	"github.com/pion/turn/v5"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// usageLog is a relay.UsageSink that keeps every record.
type usageLog struct {
	mu   sync.Mutex
	recs []relay.UsageRecord
}

func (l *usageLog) Record(r relay.UsageRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

// final returns the final record of the allocation with the given ID.
func (l *usageLog) final(id uint64) (relay.UsageRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.ID == id && r.Final {
			return r, true
		}
	}
	return relay.UsageRecord{}, false
}

func withUsage(sink relay.UsageSink) serverOption {
	return func(c *relay.Config) { c.Usage = sink }
}

// TestUsageReasons: a kicked allocation's record says kicked, one whose
// TCP connection closed says connection_closed, each once, with what it
// relayed; a Stats snapshot carries the sink's counts when it has them.
func TestUsageReasons(t *testing.T) {
	log := &usageLog{}
	s := startServer(t, withUsage(log))
	udp := newClient(t, clientConn(t, relay.UDP, s.addrs[relay.UDP], false), s.addrs[relay.UDP], testUser, testPassword)
	rc, err := udp.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer := turntest.EchoPeer(t)
	roundTrip(t, rc, peer.LocalAddr(), 3)
	turntest.WaitFor(t, "the relayed packets counted", func() bool {
		ss := s.Sessions(testUser)
		return len(ss) == 1 && ss[0].ToPeer.Packets >= 3 && ss[0].ToClient.Packets >= 3
	})
	kicked := s.Sessions(testUser)[0]

	tcpConn, err := net.Dial("tcp", s.addrs[relay.TCP])
	if err != nil {
		t.Fatal(err)
	}
	tcp := newClient(t, turn.NewSTUNConn(tcpConn), s.addrs[relay.TCP], "bob", "builder")
	if _, err := tcp.Allocate(); err != nil {
		t.Fatal(err)
	}
	closed := s.Sessions("bob")[0]

	if !s.Kick(kicked.ID) {
		t.Fatal("Kick failed")
	}
	_ = tcpConn.Close()
	turntest.WaitFor(t, "the TCP allocation's end", func() bool { _, ok := log.final(closed.ID); return ok })

	r, _ := log.final(kicked.ID)
	if r.Reason != relay.UsageKicked || r.User != testUser || r.Realm != testRealm || r.Transport != "udp" || r.Seq != 0 ||
		r.ToPeer != kicked.ToPeer || r.ToClient != kicked.ToClient || len(r.Relayed) != 1 || r.Relayed[0] != kicked.Relayed {
		t.Errorf("kicked allocation's record %+v; session %+v", r, kicked)
	}
	if r, _ := log.final(closed.ID); r.Reason != relay.UsageConnClose || r.Transport != "tcp" {
		t.Errorf("closed connection's record: %+v", r)
	}
	log.mu.Lock()
	n := len(log.recs)
	log.mu.Unlock()
	if n != 2 {
		t.Errorf("%d records, want 2 (no interim records without UsageInterval)", n)
	}
	if c := s.Stats().Usage; c != (relay.UsageCounts{}) {
		t.Errorf("Stats().Usage = %+v from a sink without counts", c)
	}
}
