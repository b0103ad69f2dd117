package relay

import (
	"testing"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay/proto"
)

// BenchmarkListenerClassify runs the listener's handling of one batch of 32
// datagrams (listenerReader.relay) with QUIC sharing off and on, per
// datagram:
//
//   - turn: ChannelData of an allocation, relayed to its peer (one GSO send
//     per batch): the TURN hot path, which QUIC sharing costs one more
//     lock-free table lookup.
//   - turn_unbound: ChannelData on an unbound channel, dropped after the
//     lookups: the classification alone, without a send.
//   - quic: QUIC short headers from a client with a flow, forwarded to the
//     backend (one sendmsg each), also with a PROXY header (copied in
//     front of each).
func BenchmarkListenerClassify(b *testing.B) {
	f := newBatchFixture(b)
	// A backend that never reads: the kernel drops what overflows its
	// buffer, and the benchmark measures the listener's side alone.
	backend := turntest.ListenPeer(b)
	relays := map[bool]*quicRelay{}
	for _, pp := range []bool{false, true} {
		f.s.cfg.QUIC = QUICConfig{Backend: backend.LocalAddr().String(), BackendProxyProtocol: pp}
		q, err := f.s.newQUICRelay()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = q.close() })
		relays[pp] = q
	}
	sock := f.s.udpSockets()[0]
	from := f.a.FiveTuple.Client

	batch := func(first func(i int) []byte) [][]byte {
		pkts := make([][]byte, listenerBatch)
		for i := range pkts {
			pkts[i] = first(i)
		}
		return pkts
	}
	channelData := func(ch uint16) [][]byte {
		return batch(func(int) []byte {
			p := make([]byte, proto.ChannelDataHeaderSize+200)
			proto.PutChannelDataHeader(p, ch, 200)
			return p
		})
	}
	quicShort := batch(func(int) []byte {
		p := make([]byte, 1200)
		p[0] = 0x5a // short header, fixed bit: above the ChannelData range
		return p
	})
	cases := []struct {
		name string
		pkts [][]byte
		on   bool
		pp   bool // PROXY header to the backend
	}{
		{"turn/off", channelData(f.chNum), false, false},
		{"turn/on", channelData(f.chNum), true, false},
		{"turn_unbound/off", channelData(0x4fff), false, false},
		{"turn_unbound/on", channelData(0x4fff), true, false},
		{"quic/on", quicShort, true, false},
		{"quic_proxy_protocol/on", quicShort, true, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := &listenerReader{so: sock, b: newRxBatch(listenerBatch, 0), tx: newTxRun(f.s)}
			if c.on {
				r.quic = relays[c.pp].reader(sock)
			}
			// The QUIC client is the TURN client's address: it has no
			// allocation on this listener for those first bytes.
			r.b.Fill(c.pkts, from)
			r.relay() // opens the flow of the quic case
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.relay()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.pkts)), "ns/datagram")
		})
	}
}
