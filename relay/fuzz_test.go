package relay

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay/proto"
)

// recordSink keeps what the server writes to the client.
type recordSink struct{ frames [][]byte }

func (r *recordSink) WriteToClient(b []byte) error {
	r.frames = append(r.frames, append([]byte(nil), b...))
	return nil
}

// FuzzServerPacket feeds arbitrary client packets through the same dispatch
// the listeners use. Nothing may panic, and every answer must be a valid
// STUN message with a correct FINGERPRINT.
func FuzzServerPacket(f *testing.F) {
	// A fixed clock and nonce key make nonces deterministic, so seeds can
	// carry valid credentials and reach the authenticated handlers.
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := auth.New(auth.Config{
		Realm: "fuzz", Users: map[string]string{"u": "p"},
		NonceKey: []byte("fuzz-nonce-key-0123456789"), Now: func() time.Time { return fixed },
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range fuzzSeeds(f, a.Nonce(netip.MustParseAddr("127.0.0.1"))) {
		f.Add(seed)
	}
	s, err := New(Config{
		Auth:       a,
		Policy:     auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayPorts: allocations.PortRange{Low: 50000, High: 50009},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	defer s.table.Close()
	ft := allocations.FiveTuple{
		Client:    netip.MustParseAddrPort("127.0.0.1:40000"),
		Server:    netip.MustParseAddrPort("127.0.0.1:3478"),
		Transport: allocations.UDP,
	}
	relayIP := relayIPs{v4: netip.MustParseAddr("127.0.0.1"), v6: netip.IPv6Loopback()}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		sink := &recordSink{}
		var req, resp, scratch stun.Message
		switch proto.Classify(pkt[0]) {
		case proto.KindChannelData:
			relayNow(s, ft, pkt)
		case proto.KindSTUN:
			if isSendIndication(pkt) {
				tx := newTxRun(s)
				s.relaySend(ft, pkt, &scratch, tx)
				tx.flush()
				return
			}
			req.Raw = append(req.Raw[:0], pkt...)
			if req.Decode() != nil {
				return
			}
			s.handleRequest(&req, &resp, ft, sink, relayIP)
		}
		for _, frame := range sink.frames {
			m := &stun.Message{Raw: frame}
			if err := m.Decode(); err != nil {
				t.Fatalf("server wrote an undecodable response: %v", err)
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Fatalf("response FINGERPRINT: %v", err)
			}
		}
	})
}

// fuzzSeeds are real requests of every method, authenticated or not.
func fuzzSeeds(f *testing.F, nonce string) [][]byte {
	f.Helper()
	integrity := stun.NewLongTermIntegrity("u", "fuzz", "p")
	peer := setterFunc(func(m *stun.Message) error {
		return proto.AddXORAddress(m, stun.AttrXORPeerAddress, netip.MustParseAddrPort("127.0.0.1:5000"))
	})
	creds := []stun.Setter{stun.NewUsername("u"), stun.NewRealm("fuzz"), stun.NewNonce(nonce), integrity, stun.Fingerprint}
	build := func(setters ...stun.Setter) []byte {
		return stun.MustBuild(append([]stun.Setter{stun.TransactionID}, setters...)...).Raw
	}
	return [][]byte{
		build(stun.BindingRequest, stun.Fingerprint),
		build(stun.NewType(stun.MethodAllocate, stun.ClassRequest), proto.RequestedTransport(proto.ProtoUDP)),
		build(append([]stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest), proto.RequestedTransport(proto.ProtoUDP)}, creds...)...),
		build(append([]stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest), proto.RequestedTransport(proto.ProtoUDP),
			proto.AdditionalAddressFamily(proto.FamilyIPv6)}, creds...)...),
		build(append([]stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest), proto.FamilyIPv6, proto.Lifetime(0)}, creds...)...),
		build(append([]stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest), proto.Lifetime(0)}, creds...)...),
		build(append([]stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), peer}, creds...)...),
		build(append([]stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest), proto.ChannelNumber(0x4001), peer}, creds...)...),
		build(stun.NewType(stun.MethodSend, stun.ClassIndication), peer, proto.Data("hello")),
		{0x40, 0x01, 0x00, 0x04, 'p', 'i', 'n', 'g'},
	}
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }
