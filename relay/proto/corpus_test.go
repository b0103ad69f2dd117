package proto

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// updateCorpus rewrites the seed corpora under testdata/fuzz:
//
//	go test ./relay/proto -run TestSeedCorpus -update-corpus
var updateCorpus = flag.Bool("update-corpus", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// corpusFile renders values in the `go test fuzz v1` format, as
// internal/fuzz's marshalCorpusFile does.
func corpusFile(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		default:
			panic(fmt.Sprintf("corpusFile: unsupported %T", v))
		}
	}
	return b.Bytes()
}

// seedMessages returns real TURN messages, named, built deterministically.
func seedMessages(t testing.TB) map[string][]byte {
	peer4 := netip.MustParseAddrPort("198.51.100.20:49152")
	peer6 := netip.MustParseAddrPort("[2001:db8:85a3::8a2e:370:7334]:50000")
	relay4 := netip.MustParseAddrPort("203.0.113.1:49999")
	relay6 := netip.MustParseAddrPort("[2001:db8::1]:60000")
	mapped := netip.MustParseAddrPort("192.0.2.15:61000")
	xor := func(attr stun.AttrType, ap netip.AddrPort) stun.Setter {
		return setterFunc(func(m *stun.Message) error { return AddXORAddress(m, attr, ap) })
	}
	auth := []stun.Setter{
		stun.NewUsername("1767225600:alice"), stun.NewRealm("example.org"), stun.NewNonce("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
		stun.NewLongTermIntegrity("1767225600:alice", "example.org", "secret"), stun.Fingerprint,
	}
	typ := stun.NewType
	msgs := map[string][]byte{
		"binding_request": build(t, stun.BindingRequest, stun.Fingerprint).Raw,
		"binding_response": build(t, stun.BindingSuccess, xor(stun.AttrXORMappedAddress, mapped),
			stun.NewSoftware("postern"), stun.Fingerprint).Raw,
		"allocate_request_noauth": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			ProtoUDP, Lifetime(time.Hour), DontFragment{}, EvenPort{ReservePort: true}, stun.NewSoftware("client"), stun.Fingerprint).Raw,
		"allocate_request_auth": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			append([]stun.Setter{ProtoUDP, FamilyIPv6, Lifetime(600 * time.Second)}, auth...)...).Raw,
		"allocate_request_token": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			append([]stun.Setter{ProtoUDP, ReservationToken{1, 2, 3, 4, 5, 6, 7, 8}}, auth...)...).Raw,
		"allocate_401": build(t, typ(stun.MethodAllocate, stun.ClassErrorResponse),
			stun.CodeUnauthorized, stun.NewRealm("example.org"), stun.NewNonce("obMatJos2AAACf"), stun.Fingerprint).Raw,
		"allocate_success_v4": build(t, typ(stun.MethodAllocate, stun.ClassSuccessResponse),
			xor(stun.AttrXORRelayedAddress, relay4), xor(stun.AttrXORMappedAddress, mapped), Lifetime(600*time.Second),
			ReservationToken{8, 7, 6, 5, 4, 3, 2, 1}, stun.NewLongTermIntegrity("1767225600:alice", "example.org", "secret"),
			stun.Fingerprint).Raw,
		"allocate_success_v6": build(t, typ(stun.MethodAllocate, stun.ClassSuccessResponse),
			xor(stun.AttrXORRelayedAddress, relay6), xor(stun.AttrXORMappedAddress, mapped), Lifetime(600*time.Second)).Raw,
		"allocate_request_dual": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			append([]stun.Setter{ProtoUDP, AdditionalAddressFamily(FamilyIPv6)}, auth...)...).Raw,
		"allocate_success_dual": build(t, typ(stun.MethodAllocate, stun.ClassSuccessResponse),
			xor(stun.AttrXORRelayedAddress, relay4), xor(stun.AttrXORRelayedAddress, relay6),
			xor(stun.AttrXORMappedAddress, mapped), Lifetime(600*time.Second)).Raw,
		"allocate_success_address_error": build(t, typ(stun.MethodAllocate, stun.ClassSuccessResponse),
			xor(stun.AttrXORRelayedAddress, relay4), xor(stun.AttrXORMappedAddress, mapped), Lifetime(600*time.Second),
			AddressErrorCode{Family: FamilyIPv6, Code: stun.CodeAddrFamilyNotSupported, Reason: "Address Family not Supported"}).Raw,
		"bad_dual_attrs": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			rawAttr{AttrAdditionalAddressFamily, []byte{2}}, rawAttr{AttrAddressErrorCode, []byte{2, 0, 9, 99}}).Raw,
		"refresh_delete": build(t, typ(stun.MethodRefresh, stun.ClassRequest), append([]stun.Setter{Lifetime(0)}, auth...)...).Raw,
		"create_permission": build(t, typ(stun.MethodCreatePermission, stun.ClassRequest),
			append([]stun.Setter{xor(stun.AttrXORPeerAddress, peer4), xor(stun.AttrXORPeerAddress, peer6)}, auth...)...).Raw,
		"channel_bind": build(t, typ(stun.MethodChannelBind, stun.ClassRequest),
			append([]stun.Setter{ChannelNumber(0x4000), xor(stun.AttrXORPeerAddress, peer6)}, auth...)...).Raw,
		"send_indication_v4": build(t, typ(stun.MethodSend, stun.ClassIndication),
			xor(stun.AttrXORPeerAddress, peer4), DontFragment{}, Data("hello")).Raw,
		"send_indication_v6": build(t, typ(stun.MethodSend, stun.ClassIndication),
			xor(stun.AttrXORPeerAddress, peer6), Data(bytes.Repeat([]byte{0x80}, 172))).Raw,
		"bad_xor_family": build(t, typ(stun.MethodSend, stun.ClassIndication),
			rawAttr{stun.AttrXORPeerAddress, []byte{0, 3, 0, 0, 1, 2, 3, 4}}, Data("x")).Raw,
		"bad_attr_sizes": build(t, typ(stun.MethodAllocate, stun.ClassRequest),
			rawAttr{stun.AttrChannelNumber, []byte{0x40}}, rawAttr{stun.AttrLifetime, []byte{1, 2, 3}},
			rawAttr{stun.AttrRequestedTransport, nil}, rawAttr{stun.AttrEvenPort, []byte{0x80, 0, 0, 0}},
			rawAttr{stun.AttrDontFragment, []byte{1}}, rawAttr{stun.AttrXORRelayedAddress, []byte{0, 2, 0, 0, 1, 2, 3, 4}}).Raw,
		"connect_request": build(t, typ(stun.MethodConnect, stun.ClassRequest),
			append([]stun.Setter{xor(stun.AttrXORPeerAddress, peer4)}, auth...)...).Raw,
		"connect_success": build(t, typ(stun.MethodConnect, stun.ClassSuccessResponse),
			ConnectionID(0x8badf00d), stun.NewLongTermIntegrity("1767225600:alice", "example.org", "secret"), stun.Fingerprint).Raw,
		"connection_bind": build(t, typ(stun.MethodConnectionBind, stun.ClassRequest),
			append([]stun.Setter{ConnectionID(1)}, auth...)...).Raw,
		"connection_attempt": build(t, typ(stun.MethodConnectionAttempt, stun.ClassIndication),
			xor(stun.AttrXORPeerAddress, peer6), ConnectionID(0xffffffff), stun.Fingerprint).Raw,
		"bad_connection_id": build(t, typ(stun.MethodConnectionBind, stun.ClassRequest),
			rawAttr{stun.AttrConnectionID, []byte{1, 2, 3, 4, 5, 6, 7, 8}}).Raw,
		"rfc5769_request":      rfc5769Request,
		"rfc5769_response_v4":  rfc5769ResponseIPv4,
		"rfc5769_response_v6":  rfc5769ResponseIPv6,
		"rfc5769_longterm":     rfc5769LongTerm,
		"data_indication_v4":   dataIndicationSeed(peer4, []byte("hi")),
		"data_indication_v6":   dataIndicationSeed(peer6, []byte("rtp!payload")),
		"data_indication_zero": dataIndicationSeed(peer4, nil),
		"icmp_indication_v4":   icmpIndicationSeed(peer4, ICMP{Type: 3, Code: 3}),
		"icmp_indication_v6":   icmpIndicationSeed(peer6, ICMP{Type: 2, Data: 1280}),
		"icmp_bad_length": build(t, typ(stun.MethodData, stun.ClassIndication),
			xor(stun.AttrXORPeerAddress, peer4), rawAttr{AttrICMP, []byte{0, 0, 6, 3}}).Raw,
	}
	return msgs
}

func dataIndicationSeed(peer netip.AddrPort, payload []byte) []byte {
	buf := make([]byte, DataIndicationHeadroom+len(payload)+3)
	copy(buf[DataIndicationHeadroom:], payload)
	return bytes.Clone(PutDataIndication(buf, len(payload), peer, testTxID))
}

func icmpIndicationSeed(peer netip.AddrPort, icmp ICMP) []byte {
	return bytes.Clone(PutICMPIndication(make([]byte, ICMPIndicationSize), peer, icmp, testTxID))
}

func channelDataSeed(number uint16, payload []byte, pad bool) []byte {
	buf := make([]byte, ChannelDataHeaderSize+len(payload)+3)
	copy(buf[ChannelDataHeaderSize:], payload)
	return bytes.Clone(PutChannelData(buf, number, len(payload), pad))
}

// seedCorpora returns the seed files: fuzz target -> file name -> values.
func seedCorpora(t testing.TB) map[string]map[string][]any {
	msgs := seedMessages(t)
	rtp := append([]byte{0x80, 0x60, 0x12, 0x34}, bytes.Repeat([]byte{0x5a}, 1196)...)
	chans := map[string][]byte{
		"hello_padded":      channelDataSeed(0x4000, []byte("hello"), true),
		"hello_unpadded":    channelDataSeed(0x4000, []byte("hello"), false),
		"empty_last":        channelDataSeed(0x4FFF, nil, false),
		"rtp_1200":          channelDataSeed(0x4123, rtp, false),
		"truncated":         []byte("\x40\x01\x00\x64hello"),
		"reserved_0x5000":   []byte("\x50\x00\x00\x01x\x00\x00\x00"),
		"length_ffff_short": []byte("\x40\x00\xff\xff\x00\x00\x00\x00"),
		"short_header":      []byte("\x40\x00\x00"),
	}

	c := map[string]map[string][]any{
		"FuzzSTUNMessage":    {},
		"FuzzChannelData":    {},
		"FuzzFramer":         {},
		"FuzzClassify":       {},
		"FuzzDataIndication": {},
		"FuzzICMPIndication": {},
	}
	for name, m := range msgs {
		c["FuzzSTUNMessage"][name] = []any{m}
	}
	for name, cd := range chans {
		c["FuzzChannelData"][name] = []any{cd}
	}

	// Streams as a TCP/TLS client sends them: ChannelData padded.
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	stunHdr := func(length uint16, cookie uint32) []byte {
		return append([]byte{0x00, 0x01, byte(length >> 8), byte(length), byte(cookie >> 24), byte(cookie >> 16),
			byte(cookie >> 8), byte(cookie)}, testTxID[:]...)
	}
	streams := map[string][]byte{
		"session": cat(msgs["allocate_request_noauth"], msgs["allocate_request_auth"], msgs["create_permission"],
			msgs["send_indication_v4"], msgs["channel_bind"], chans["hello_padded"],
			channelDataSeed(0x4000, nil, true), channelDataSeed(0x4001, rtp[:7], true), msgs["refresh_delete"]),
		"rfc5769":                    cat(msgs["rfc5769_request"], msgs["rfc5769_response_v4"], msgs["rfc5769_response_v6"], msgs["rfc5769_longterm"]),
		"single_channeldata":         chans["hello_padded"],
		"unpadded_channeldata":       cat(chans["hello_unpadded"], chans["hello_unpadded"]),
		"tls_client_hello":           []byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
		"http_get":                   []byte("GET / HTTP/1.1\r\nHost: turn.example.org\r\n\r\n"),
		"channeldata_length_ffff":    cat([]byte("\x40\x00\xff\xff"), make([]byte, 64)),
		"stun_length_fffc_truncated": cat(stunHdr(0xfffc, magicCookie), make([]byte, 64)),
		"stun_length_not_aligned":    cat(stunHdr(0x0005, magicCookie), make([]byte, 8)),
		"stun_bad_cookie":            stunHdr(0, 0x2112a443),
		"stun_then_garbage":          cat(msgs["binding_request"], []byte("\x80\x00\x00\x00")),
		"truncated_header":           []byte("\x00\x01\x00"),
	}
	for name, s := range streams {
		c["FuzzFramer"][name] = []any{s}
	}

	for _, b := range []byte{0x00, 0x03, 0x04, 0x13, 0x16, 0x17, 0x3f, 0x40, 0x4f, 0x50, 0x80, 0xff} {
		c["FuzzClassify"][fmt.Sprintf("byte_%02x", b)] = []any{b}
	}

	ip4 := []byte{198, 51, 100, 20}
	ip6 := netip.MustParseAddr("2001:db8:85a3::8a2e:370:7334").AsSlice()
	mapped := netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()
	c["FuzzDataIndication"] = map[string][]any{
		"v4_hello":       {[]byte("hello"), ip4, uint16(49152), testTxID[:]},
		"v4_empty":       {[]byte{}, ip4, uint16(0), []byte{}},
		"v6_rtp_1200":    {rtp, ip6, uint16(50000), testTxID[:]},
		"v6_three_bytes": {[]byte("abc"), ip6, uint16(65535), testTxID[:5]},
		"4in6_mapped":    {[]byte("mapped"), mapped, uint16(3478), testTxID[:]},
		"no_address":     {[]byte("x"), []byte{1, 2}, uint16(1), []byte{}},
	}
	c["FuzzICMPIndication"] = map[string][]any{
		"v4_port_unreachable": {ip4, uint16(49152), byte(3), uint16(3), []byte{0, 0, 0, 0}, testTxID[:]},
		"v4_frag_needed_1400": {ip4, uint16(5004), byte(3), uint16(4), []byte{0, 0, 0x05, 0x78}, testTxID[:]},
		"v6_packet_too_big":   {ip6, uint16(50000), byte(2), uint16(0), []byte{0, 0, 0x05, 0x00}, testTxID[:]},
		"v6_port_unreachable": {ip6, uint16(1), byte(1), uint16(4), []byte{}, testTxID[:7]},
		"largest_fields":      {ip4, uint16(65535), byte(MaxICMPType), uint16(MaxICMPCode), []byte{0xff, 0xff, 0xff, 0xff}, []byte{}},
		"type_out_of_range":   {ip4, uint16(1), byte(128), uint16(0), []byte{}, []byte{}},
		"code_out_of_range":   {ip6, uint16(1), byte(1), uint16(512), []byte{}, []byte{}},
		"no_address":          {[]byte{1}, uint16(1), byte(3), uint16(3), []byte{}, []byte{}},
	}
	return c
}

// TestSeedCorpus checks that testdata/fuzz holds the seed corpora built from
// real messages (so `go test` runs them through every fuzz target) and that
// they are current. Rewrite them with -update-corpus.
func TestSeedCorpus(t *testing.T) {
	corpora := seedCorpora(t)
	for _, target := range slices.Sorted(maps.Keys(corpora)) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, vals := range corpora[target] {
			path := filepath.Join(dir, "seed_"+name)
			want := corpusFile(vals...)
			if *updateCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run with -update-corpus)", err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (run with -update-corpus)", path)
			}
		}
	}
}
