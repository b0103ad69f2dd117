package proto

// Kind is what the first byte of a packet or stream says it carries.
type Kind uint8

// Kinds returned by Classify.
const (
	// KindUnknown is anything Postern does not serve (DTLS, RTP/RTCP, QUIC,
	// ZRTP, garbage).
	KindUnknown Kind = iota
	// KindSTUN is a STUN message (TURN requests and indications).
	KindSTUN
	// KindChannelData is a TURN ChannelData message.
	KindChannelData
	// KindTLS is a TLS handshake record, on a stream that multiplexes plain
	// TURN and TURN over TLS.
	KindTLS
)

// String returns the kind's name for logs.
func (k Kind) String() string {
	switch k {
	case KindSTUN:
		return "STUN"
	case KindChannelData:
		return "ChannelData"
	case KindTLS:
		return "TLS"
	default:
		return "unknown"
	}
}

// tlsHandshake is the TLS record content type of a ClientHello (RFC 8446
// §5.1: handshake(22)).
const tlsHandshake = 0x16

// Classify says what a packet or stream starting with first carries, per the
// RFC 7983 §7 demultiplexing table:
//
//	            +----------------+
//	            |        [0..3] -+--> forward to STUN
//	            |                |
//	            |      [16..19] -+--> forward to ZRTP
//	            |                |
//	packet -->  |      [20..63] -+--> forward to DTLS
//	            |                |
//	            |      [64..79] -+--> forward to TURN Channel
//	            |                |
//	            |    [128..191] -+--> forward to RTP/RTCP
//	            +----------------+
//
// 22 (0x16) lies inside the DTLS range; Postern serves no DTLS, so on its
// sockets it means a TLS handshake record (tcp+tls sniffing). Everything else
// outside STUN and ChannelData is KindUnknown. HOT: allocates nothing.
func Classify(first byte) Kind {
	switch {
	case first <= 3:
		return KindSTUN
	case first >= 64 && first <= 79:
		return KindChannelData
	case first == tlsHandshake:
		return KindTLS
	default:
		return KindUnknown
	}
}
