package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"
	"testing/iotest"

	"github.com/pion/stun/v4"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ (see corpus_test.go).

// FuzzSTUNMessage decodes arbitrary bytes with pion and runs every getter of
// this package on the result: none may panic, and whatever decodes must
// re-encode to the same value.
func FuzzSTUNMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(stun.Message)
		if err := stun.Decode(data, m); err != nil {
			return
		}
		for _, attr := range []stun.AttrType{stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress, stun.AttrXORMappedAddress} {
			ap, err := GetXORAddress(m, attr)
			if err != nil {
				if ap.IsValid() {
					t.Fatalf("%s: %v returned with error %v", attr, ap, err)
				}
				continue
			}
			if !ap.IsValid() || ap.Addr().Zone() != "" {
				t.Fatalf("%s: decoded invalid address %v", attr, ap)
			}
			// pion reads the reserved byte as part of the family; RFC 8489
			// §14.1 says to ignore it, so compare only when it is zero.
			if raw, _ := m.Get(attr); raw[0] == 0 {
				var pa stun.XORMappedAddress
				if err := pa.GetFromAs(m, attr); err != nil {
					t.Fatalf("%s: we decoded %v, pion fails: %v", attr, ap, err)
				}
				if pip, _ := netip.AddrFromSlice(pa.IP); pip != ap.Addr() || pa.Port != int(ap.Port()) {
					t.Fatalf("%s: we decoded %v, pion %v:%d", attr, ap, pa.IP, pa.Port)
				}
			}
			enc := stun.New()
			enc.TransactionID = m.TransactionID
			if err := AddXORAddress(enc, attr, ap); err != nil {
				t.Fatalf("%s: re-encoding %v: %v", attr, ap, err)
			}
			back, err := GetXORAddress(enc, attr)
			if err != nil || back.Addr() != ap.Addr().Unmap() || back.Port() != ap.Port() {
				t.Fatalf("%s: %v re-encoded decodes as %v, %v", attr, ap, back, err)
			}
		}

		var n ChannelNumber
		if n.GetFrom(m) == nil {
			roundTrip(t, n, new(ChannelNumber))
		}
		var l Lifetime
		if l.GetFrom(m) == nil {
			roundTrip(t, l, new(Lifetime))
		}
		var p RequestedTransport
		if p.GetFrom(m) == nil {
			roundTrip(t, p, new(RequestedTransport))
		}
		var df DontFragment
		if df.GetFrom(m) == nil && !HasDontFragment(m) {
			t.Fatal("DontFragment.GetFrom succeeded, HasDontFragment false")
		}
		var e EvenPort
		if e.GetFrom(m) == nil {
			roundTrip(t, e, new(EvenPort))
		}
		var fa RequestedAddressFamily
		if fa.GetFrom(m) == nil {
			roundTrip(t, fa, new(RequestedAddressFamily))
		}
		var cid ConnectionID
		if cid.GetFrom(m) == nil {
			roundTrip(t, cid, new(ConnectionID))
		} else if v, err := m.Get(stun.AttrConnectionID); err == nil && len(v) == connectionIDSize {
			t.Fatalf("4-byte CONNECTION-ID %x refused", v)
		}
		var aa AdditionalAddressFamily
		if aa.GetFrom(m) == nil {
			roundTrip(t, aa, new(AdditionalAddressFamily))
		}
		var ae AddressErrorCode
		if ae.GetFrom(m) == nil {
			roundTrip(t, ae, new(AddressErrorCode))
		}
		var tok ReservationToken
		if tok.GetFrom(m) == nil && len(tok) != reservationTokenSize {
			t.Fatalf("reservation token of %d bytes", len(tok))
		}
		var d Data
		if d.GetFrom(m) == nil && len(d) > len(data) {
			t.Fatalf("DATA of %d bytes from a %d-byte message", len(d), len(data))
		}
		var icmp ICMP
		if icmp.GetFrom(m) == nil {
			roundTrip(t, icmp, new(ICMP))
		}
	})
}

// roundTrip checks that v re-encodes and decodes to itself.
func roundTrip[T comparable, P interface {
	*T
	GetFrom(*stun.Message) error
}](t *testing.T, v T, out P) {
	t.Helper()
	m := stun.New()
	if err := any(v).(stun.Setter).AddTo(m); err != nil {
		t.Fatalf("%T.AddTo: %v", v, err)
	}
	m.WriteHeader()
	if err := out.GetFrom(decode(t, m.Raw)); err != nil || *out != v {
		t.Fatalf("%T %v round trip: %v, %v", v, v, *out, err)
	}
}

// FuzzChannelData parses arbitrary bytes as ChannelData; what parses must
// rebuild byte for byte with PutChannelData.
func FuzzChannelData(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		number, payload, err := ParseChannelData(data)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadChannelNumber) {
				t.Fatalf("unexpected error %v", err)
			}
			if number != 0 || payload != nil {
				t.Fatalf("values returned with error %v", err)
			}
			return
		}
		if !ChannelNumber(number).Valid() || Classify(data[0]) != KindChannelData {
			t.Fatalf("accepted channel %#04x", number)
		}
		if len(payload) != int(binary.BigEndian.Uint16(data[2:4])) {
			t.Fatalf("payload %d bytes, length field %d", len(payload), binary.BigEndian.Uint16(data[2:4]))
		}
		if len(payload) > 0 && &payload[0] != &data[ChannelDataHeaderSize] {
			t.Fatal("payload does not alias the input")
		}
		buf := make([]byte, ChannelDataHeaderSize+PaddedLen(len(payload)))
		copy(buf[ChannelDataHeaderSize:], payload)
		frame := PutChannelData(buf, number, len(payload), false)
		if !bytes.Equal(frame, data[:ChannelDataHeaderSize+len(payload)]) {
			t.Fatalf("rebuilt %x, want %x", frame, data[:ChannelDataHeaderSize+len(payload)])
		}
	})
}

// FuzzFramer frames an arbitrary byte stream: Next must terminate with
// io.EOF, io.ErrUnexpectedEOF or ErrNotTURN, every frame must be well formed,
// and reading one byte at a time must give the same frames.
func FuzzFramer(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, errWhole := frameAll(t, data, bytes.NewReader(data))
		bytewise, errBytewise := frameAll(t, data, iotest.OneByteReader(bytes.NewReader(data)))
		if len(whole) != len(bytewise) || errors.Is(errWhole, ErrNotTURN) != errors.Is(errBytewise, ErrNotTURN) ||
			(errWhole == io.EOF) != (errBytewise == io.EOF) {
			t.Fatalf("whole: %d frames, %v; one byte at a time: %d frames, %v",
				len(whole), errWhole, len(bytewise), errBytewise)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], bytewise[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}

// frameAll runs a Framer over r (which serves data) to the end, checking
// every frame against the input, and returns the frames and the final error.
func frameAll(t *testing.T, data []byte, r io.Reader) (frames [][]byte, err error) {
	fr := NewFramer(r)
	off := 0
	// Every frame consumes at least 4 bytes, so this bound is never reached
	// by a correct Framer.
	for range len(data)/4 + 2 {
		frame, kind, err := fr.Next()
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrNotTURN) {
				t.Fatalf("unexpected error %v", err)
			}
			if err == io.EOF && off != len(data) {
				t.Fatalf("io.EOF at offset %d of %d", off, len(data))
			}
			return frames, err
		}
		if !bytes.HasPrefix(data[off:], frame) {
			t.Fatalf("frame at offset %d is not the input", off)
		}
		switch kind {
		case KindSTUN:
			n := int(binary.BigEndian.Uint16(frame[2:4]))
			if len(frame) != stunHeaderSize+n || n%4 != 0 || !stun.IsMessage(frame) || frame[0] > 3 {
				t.Fatalf("malformed STUN frame %x", frame)
			}
			off += len(frame)
		case KindChannelData:
			num, payload, err := ParseChannelData(frame)
			if err != nil || len(frame) != ChannelDataHeaderSize+len(payload) || !ChannelNumber(num).Valid() {
				t.Fatalf("malformed ChannelData frame %x: %v", frame, err)
			}
			off += ChannelDataHeaderSize + PaddedLen(len(payload))
		default:
			t.Fatalf("frame of kind %v", kind)
		}
		if off > len(data) {
			t.Fatalf("consumed %d of %d bytes", off, len(data))
		}
		frames = append(frames, bytes.Clone(frame))
	}
	t.Fatalf("Framer returned more frames than %d bytes can hold", len(data))
	return nil, nil
}

// FuzzClassify checks Classify against RFC 7983's table.
func FuzzClassify(f *testing.F) {
	f.Fuzz(func(t *testing.T, b byte) {
		k := Classify(b)
		switch {
		case b <= 3 && k != KindSTUN,
			b >= 64 && b <= 79 && k != KindChannelData,
			b == 0x16 && k != KindTLS,
			(b > 3 && b != 0x16 && (b < 64 || b > 79)) && k != KindUnknown:
			t.Fatalf("Classify(%#02x) = %v", b, k)
		}
		if k.String() == "" {
			t.Fatal("empty Kind name")
		}
	})
}

// FuzzDataIndication builds Data indications from arbitrary payloads, peers
// and transaction IDs and decodes them back with pion.
func FuzzDataIndication(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte, ip []byte, port uint16, tx []byte) {
		addr, txID := fuzzPeer(ip), fuzzTxID(tx)
		peer := netip.AddrPortFrom(addr, port)

		buf := bytes.Repeat([]byte{0xAA}, DataIndicationHeadroom+len(payload)+3)
		copy(buf[DataIndicationHeadroom:], payload)
		frame := PutDataIndication(buf, len(payload), peer, txID)
		if !addr.IsValid() || len(payload) > MaxDataIndicationPayload {
			if frame != nil {
				t.Fatal("frame built from invalid input")
			}
			return
		}
		m := decodeDataIndication(t, frame, txID, peer)
		var d Data
		if err := d.GetFrom(m); err != nil || !bytes.Equal(d, payload) {
			t.Fatalf("DATA %x, %v; want %x", d, err, payload)
		}
	})
}

// FuzzICMPIndication builds Data indications reporting ICMP errors
// (RFC 8656 §11.5) from arbitrary peers, types, codes and error data, and
// decodes them back with pion and ICMP.GetFrom.
func FuzzICMPIndication(f *testing.F) {
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, typ byte, code uint16, errData []byte, tx []byte) {
		addr, txID := fuzzPeer(ip), fuzzTxID(tx)
		var d [4]byte
		copy(d[:], errData)
		icmp := ICMP{Type: typ, Code: code, Data: binary.BigEndian.Uint32(d[:])}
		peer := netip.AddrPortFrom(addr, port)

		buf := bytes.Repeat([]byte{0xAA}, ICMPIndicationSize)
		frame := PutICMPIndication(buf, peer, icmp, txID)
		if !addr.IsValid() || typ > MaxICMPType || code > MaxICMPCode {
			if frame != nil {
				t.Fatal("frame built from invalid input")
			}
			return
		}
		m := decodeDataIndication(t, frame, txID, peer)
		var back ICMP
		if err := back.GetFrom(m); err != nil || back != icmp {
			t.Fatalf("ICMP %+v, %v; want %+v", back, err, icmp)
		}
		if m.Contains(stun.AttrData) || len(m.Attributes) != 2 {
			t.Fatalf("attributes %v, want XOR-PEER-ADDRESS and ICMP only", m.Attributes)
		}
	})
}

// fuzzPeer makes an address of a fuzzer's bytes: IPv6 from 16 or more,
// IPv4 from 4 or more, invalid from fewer.
func fuzzPeer(ip []byte) netip.Addr {
	switch {
	case len(ip) >= 16:
		return netip.AddrFrom16([16]byte(ip))
	case len(ip) >= 4:
		return netip.AddrFrom4([4]byte(ip))
	}
	return netip.Addr{}
}

// fuzzTxID makes a transaction ID of a fuzzer's bytes.
func fuzzTxID(tx []byte) (id [12]byte) {
	copy(id[:], tx)
	return id
}

// decodeDataIndication decodes frame with pion and checks it is a Data
// indication of txID from peer, padded to 4 bytes.
func decodeDataIndication(t *testing.T, frame []byte, txID [12]byte, peer netip.AddrPort) *stun.Message {
	t.Helper()
	m := &stun.Message{Raw: frame}
	if err := m.Decode(); err != nil {
		t.Fatalf("pion Decode: %v", err)
	}
	if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || m.TransactionID != txID || len(frame)%4 != 0 {
		t.Fatalf("header: %v %x, %d bytes", m.Type, m.TransactionID, len(frame))
	}
	if got, err := GetXORAddress(m, stun.AttrXORPeerAddress); err != nil || got.Addr() != peer.Addr().Unmap() || got.Port() != peer.Port() {
		t.Fatalf("peer %v, %v; want %v", got, err, peer)
	}
	return m
}
