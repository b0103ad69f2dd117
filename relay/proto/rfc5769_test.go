package proto

import (
	"bytes"
	"io"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// RFC 5769 test vectors (STUN test vectors), byte for byte.
var (
	// RFC 5769 §2.1 Sample Request; short-term password rfc5769Password.
	rfc5769Request = []byte("\x00\x01\x00\x58" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x10" + "STUN test client" +
		"\x00\x24\x00\x04" + "\x6e\x00\x01\xff" +
		"\x80\x29\x00\x08" + "\x93\x2f\xf9\xb1\x51\x26\x3b\x36" +
		"\x00\x06\x00\x09" + "\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20" +
		"\x00\x08\x00\x14" + "\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2" +
		"\x80\x28\x00\x04" + "\xe5\x7a\x3b\xcf")

	// RFC 5769 §2.2 Sample IPv4 Response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
	rfc5769ResponseIPv4 = []byte("\x01\x01\x00\x3c" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" + "\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x08" + "\x00\x01\xa1\x47\xe1\x12\xa6\x43" +
		"\x00\x08\x00\x14" + "\x2b\x91\xf5\x99\xfd\x9e\x90\xc3\x8c\x74\x89\xf9\x2a\xf9\xba\x53\xf0\x6b\xe7\xd7" +
		"\x80\x28\x00\x04" + "\xc0\x7d\x4c\x96")

	// RFC 5769 §2.3 Sample IPv6 Response: XOR-MAPPED-ADDRESS
	// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
	rfc5769ResponseIPv6 = []byte("\x01\x01\x00\x48" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" + "\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x14" + "\x00\x02\xa1\x47" +
		"\x01\x13\xa9\xfa\xa5\xd3\xf1\x79\xbc\x25\xf4\xb5\xbe\xd2\xb9\xd9" +
		"\x00\x08\x00\x14" + "\xa3\x82\x95\x4e\x4b\xe6\x7b\xf1\x17\x84\xc9\x7c\x82\x92\xc2\x75\xbf\xe3\xed\x41" +
		"\x80\x28\x00\x04" + "\xc8\xfb\x0b\x4c")

	// RFC 5769 §2.4 Sample Request with Long-Term Authentication: username
	// "マトリックス", realm "example.org", password "TheMatrIX" (after SASLprep).
	rfc5769LongTerm = []byte("\x00\x01\x00\x60" +
		"\x21\x12\xa4\x42" +
		"\x78\xad\x34\x33\xc6\xad\x72\xc0\x29\xda\x41\x2e" +
		"\x00\x06\x00\x12" + "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9\x00\x00" +
		"\x00\x15\x00\x1c" + "f//499k954d6OL34oL9FSTvy64sA" +
		"\x00\x14\x00\x0b" + "example.org\x00" +
		"\x00\x08\x00\x14" + "\xf6\x70\x24\x65\x6d\xd6\x4a\x3e\x02\xb8\xe0\x71\x2e\x85\xc9\xa2\x8c\xa8\x96\x66")
)

const rfc5769Password = "VOkJxbRl1RmTxUk/WvJxBt"

func TestRFC5769(t *testing.T) {
	tests := []struct {
		name        string
		raw         []byte
		integrity   stun.MessageIntegrity
		fingerprint bool
		mapped      netip.AddrPort // zero: no XOR-MAPPED-ADDRESS
	}{
		{"request", rfc5769Request, stun.NewShortTermIntegrity(rfc5769Password), true, netip.AddrPort{}},
		{"ipv4 response", rfc5769ResponseIPv4, stun.NewShortTermIntegrity(rfc5769Password), true,
			netip.MustParseAddrPort("192.0.2.1:32853")},
		{"ipv6 response", rfc5769ResponseIPv6, stun.NewShortTermIntegrity(rfc5769Password), true,
			netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
		{"long-term request", rfc5769LongTerm,
			stun.NewLongTermIntegrity("\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9", "example.org", "TheMatrIX"), false, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if Classify(tt.raw[0]) != KindSTUN {
				t.Fatalf("Classify = %v", Classify(tt.raw[0]))
			}
			m := decode(t, tt.raw)
			if err := tt.integrity.Check(m); err != nil {
				t.Errorf("MESSAGE-INTEGRITY: %v", err)
			}
			if tt.fingerprint {
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("FINGERPRINT: %v", err)
				}
			}
			got, err := GetXORAddress(m, stun.AttrXORMappedAddress)
			if !tt.mapped.IsValid() {
				if err != stun.ErrAttributeNotFound {
					t.Errorf("GetXORAddress on a message without it: %v, %v", got, err)
				}
				return
			}
			if err != nil || got != tt.mapped {
				t.Fatalf("XOR-MAPPED-ADDRESS = %v, %v; want %v", got, err, tt.mapped)
			}
			// Our encoder reproduces the vector's bytes.
			want, _ := m.Get(stun.AttrXORMappedAddress)
			enc := stun.New()
			enc.TransactionID = m.TransactionID
			if err := AddXORAddress(enc, stun.AttrXORMappedAddress, tt.mapped); err != nil {
				t.Fatal(err)
			}
			if v, _ := enc.Get(stun.AttrXORMappedAddress); !bytes.Equal(v, want) {
				t.Errorf("AddXORAddress = %x, vector has %x", v, want)
			}
		})
	}
}

// TestRFC5769Framer frames the vectors sent back to back on a stream.
func TestRFC5769Framer(t *testing.T) {
	vectors := [][]byte{rfc5769Request, rfc5769ResponseIPv4, rfc5769ResponseIPv6, rfc5769LongTerm}
	var want []wantFrame
	for _, v := range vectors {
		want = append(want, wantFrame{KindSTUN, v})
	}
	if err := readAll(t, NewFramer(bytes.NewReader(bytes.Join(vectors, nil))), want); err != io.EOF {
		t.Errorf("final error %v, want io.EOF", err)
	}
}
