package sniff

import (
	"bufio"
	"errors"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// What a port shared with a web site sees, and where it goes:
//
//	first byte 0x16 (TLS)  -> read the ClientHello without consuming it:
//	    ALPN offers acme-tls/1 for one of our ACME names -> our TLS stack (challenge)
//	    SNI a TURN host (or absent) and ALPN absent or
//	    offering stun.turn                             -> TURN/TLS, served here
//	    anything else                                  -> the web backend, byte for byte
//	                                                      (no backend: a built-in page)
//	first byte 0-3 (STUN)  -> TURN/TCP
//	first byte 'A'-'Z'     -> plain HTTP: the web backend (no backend: a built-in page)
//
// Only the ClientHello is inspected: a TLS connection that goes to the
// backend is never terminated here, so the web site keeps its own
// certificate and sees exactly the bytes the client sent.

// TLS identifiers used in routing.
const (
	// ALPNACME is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
	ALPNACME = "acme-tls/1"
	// ALPNHTTP1 is HTTP/1.1's ALPN protocol ID (RFC 7301).
	ALPNHTTP1 = "http/1.1"
	// ALPNTURN is the ALPN protocol ID for TURN over TLS (RFC 7443).
	ALPNTURN = "stun.turn"
)

// TLS record and handshake constants (RFC 8446 §5.1, §4).
const (
	recordHeaderLen      = 5
	recordTypeHandshake  = 0x16
	maxRecordPayload     = 1<<14 + 2048 // TLSCiphertext bound; plaintext is 1<<14
	handshakeHeaderLen   = 4
	handshakeClientHello = 0x01
	// maxClientHello bounds the ClientHello we are willing to reassemble.
	// Real ones are well under 4 KiB even with post-quantum key shares; a
	// larger one is handed to crypto/tls unparsed.
	maxClientHello = 1 << 14
	// maxHelloRecords bounds the records a ClientHello may be split into
	// (real clients use one, rarely two or three), so a client sending it
	// one byte per record cannot make routing quadratic.
	maxHelloRecords = 32

	extServerName = 0  // RFC 6066 §3
	extALPN       = 16 // RFC 7301 §3.1
	sniHostName   = 0  // NameType host_name
)

// HelloBufSize is the buffer that holds the largest ClientHello
// PeekClientHello inspects (in up to maxHelloRecords records).
const HelloBufSize = handshakeHeaderLen + maxClientHello + maxHelloRecords*recordHeaderLen

// Errors of ParseClientHello.
var (
	ErrNotHandshake = errors.New("relay: not a TLS handshake record")
	ErrNotHello     = errors.New("relay: first handshake message is not a ClientHello")
	ErrHelloTooBig  = errors.New("relay: ClientHello too large to inspect")
	ErrBadHello     = errors.New("relay: malformed ClientHello")
)

// ClientHello is what routing needs from a TLS ClientHello.
type ClientHello struct {
	ServerName string   // SNI host name, lower case, no trailing dot; "" if absent
	ALPN       []string // ALPN protocols offered, in the client's order; nil if absent
}

// Offers reports whether the client offered ALPN protocol p.
func (h ClientHello) Offers(p string) bool { return slices.Contains(h.ALPN, p) }

// ParseClientHello parses the ClientHello at the start of b, which holds
// TLS records as they arrived (the handshake message may span several
// records). When b is too short it returns need > len(b): the number of
// bytes to have before calling again. It never reads past the records it
// needs and never trusts a length field it has not checked against b.
func ParseClientHello(b []byte) (h ClientHello, need int, err error) {
	var msg []byte // the handshake message, reassembled
	first, aliased := true, false
	off := 0
	for records := 1; ; records++ {
		if records > maxHelloRecords {
			return ClientHello{}, 0, ErrHelloTooBig
		}
		if len(b) < off+recordHeaderLen {
			return ClientHello{}, off + recordHeaderLen, nil
		}
		if b[off] != recordTypeHandshake {
			return ClientHello{}, 0, ErrNotHandshake
		}
		n := int(b[off+3])<<8 | int(b[off+4])
		if n == 0 || n > maxRecordPayload {
			return ClientHello{}, 0, ErrBadHello
		}
		end := off + recordHeaderLen + n
		if len(b) < end {
			return ClientHello{}, end, nil
		}
		frag := b[off+recordHeaderLen : end]
		switch {
		case first:
			msg = frag // the usual case: one record, no copy
			first, aliased = false, true
		case len(msg)+len(frag) > handshakeHeaderLen+maxClientHello:
			return ClientHello{}, 0, ErrHelloTooBig
		case aliased:
			// Copy out of b before appending, never into it.
			msg = append(append(make([]byte, 0, 2*(len(msg)+len(frag))), msg...), frag...)
			aliased = false
		default:
			msg = append(msg, frag...)
		}
		off = end
		if len(msg) < handshakeHeaderLen {
			continue
		}
		if msg[0] != handshakeClientHello {
			return ClientHello{}, 0, ErrNotHello
		}
		bodyLen := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if bodyLen > maxClientHello {
			return ClientHello{}, 0, ErrHelloTooBig
		}
		if len(msg) < handshakeHeaderLen+bodyLen {
			continue
		}
		h, err := parseClientHelloBody(msg[handshakeHeaderLen : handshakeHeaderLen+bodyLen])
		return h, 0, err
	}
}

// parseClientHelloBody parses a ClientHello message body (RFC 8446 §4.1.2,
// which keeps the TLS 1.2 layout) and extracts SNI and ALPN.
func parseClientHelloBody(body []byte) (ClientHello, error) {
	s := cryptobyte.String(body)
	var version uint16
	var random, sessionID, suites, compression cryptobyte.String
	if !s.ReadUint16(&version) ||
		!s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return ClientHello{}, ErrBadHello
	}
	var h ClientHello
	if s.Empty() {
		return h, nil // no extensions at all (SSL 3.0-style hello)
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return ClientHello{}, ErrBadHello
	}
	seenSNI, seenALPN := false, false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return ClientHello{}, ErrBadHello
		}
		switch typ {
		case extServerName:
			// RFC 8446 §4.2: "There MUST NOT be more than one extension
			// of the same type in a given extension block."
			if seenSNI {
				return ClientHello{}, ErrBadHello
			}
			seenSNI = true
			name, err := parseSNI(data)
			if err != nil {
				return ClientHello{}, err
			}
			h.ServerName = name
		case extALPN:
			if seenALPN {
				return ClientHello{}, ErrBadHello
			}
			seenALPN = true
			protos, err := parseALPN(data)
			if err != nil {
				return ClientHello{}, err
			}
			h.ALPN = protos
		}
	}
	return h, nil
}

// parseSNI returns the host_name of a server_name extension (RFC 6066 §3).
func parseSNI(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", ErrBadHello
	}
	name := ""
	for !list.Empty() {
		var typ uint8
		var v cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&v) {
			return "", ErrBadHello
		}
		if typ != sniHostName || name != "" {
			continue // unknown name types are skipped; the first host_name wins
		}
		if len(v) == 0 {
			return "", ErrBadHello
		}
		name = NormalizeHost(string(v))
	}
	return name, nil
}

// parseALPN returns the protocols of an ALPN extension (RFC 7301 §3.1).
func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, ErrBadHello
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		// "Empty strings MUST NOT be included."
		if !list.ReadUint8LengthPrefixed(&p) || len(p) == 0 {
			return nil, ErrBadHello
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

// NormalizeHost lower-cases a DNS name and drops a trailing dot, the form
// SNI values and configured names are compared in.
func NormalizeHost(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// PeekClientHello reads, without consuming, the ClientHello at the start of
// br. The caller bounds the wait with a read deadline. A ClientHello larger
// than br's buffer is ErrHelloTooBig (Conn.Hello grows the buffer once).
func PeekClientHello(br *bufio.Reader) (ClientHello, error) {
	need := recordHeaderLen
	for {
		if need > br.Size() {
			return ClientHello{}, ErrHelloTooBig
		}
		b, err := br.Peek(need)
		if err != nil {
			return ClientHello{}, err
		}
		h, more, err := ParseClientHello(b)
		if err != nil || more == 0 {
			return h, err
		}
		need = more
	}
}

// Route is where a connection on a stream listener goes.
type Route uint8

// Routes.
const (
	RouteTURN    Route = iota // served here as TURN (over TLS: after our handshake)
	RouteBackend              // forwarded byte for byte to the web backend
	RoutePage                 // no backend: answered with the built-in page
)

func (r Route) String() string {
	switch r {
	case RouteTURN:
		return "turn"
	case RouteBackend:
		return "web backend"
	case RoutePage:
		return "built-in page"
	}
	return "unknown"
}

// Router decides, from a ClientHello or the first byte of a plain
// connection, whether it is TURN or belongs to the web site.
type Router struct {
	Backend   bool     // a web backend is configured
	TURNHosts []string // normalized (NormalizeHost); empty: every name is a TURN name
	ACMEHosts []string // normalized names we answer TLS-ALPN-01 challenges for
}

// isTURNHost reports whether an SNI value names this TURN server. Clients
// that send no SNI (TURN clients dialling an IP address) are TURN.
func (w *Router) isTURNHost(sni string) bool {
	return sni == "" || len(w.TURNHosts) == 0 || slices.Contains(w.TURNHosts, sni)
}

// Web is where traffic for the web site goes: the backend, or the
// built-in page when there is none.
func (w *Router) Web() Route {
	if w.Backend {
		return RouteBackend
	}
	return RoutePage
}

// TLS decides where a TLS connection goes from its ClientHello.
func (w *Router) TLS(h ClientHello) Route {
	// RFC 8737 §3: the CA connects with ALPN acme-tls/1 and the SNI of the
	// name being validated. Ours are answered by our TLS stack; anyone
	// else's belong to the web site, which may run its own ACME client.
	if h.Offers(ALPNACME) {
		if slices.Contains(w.ACMEHosts, h.ServerName) {
			return RouteTURN
		}
		return w.Web()
	}
	// RFC 7443: TURN clients offer "stun.turn" or no ALPN at all. A client
	// offering only other protocols (a browser: h2, http/1.1) is no TURN
	// client, whatever name it asks for.
	turnALPN := len(h.ALPN) == 0 || h.Offers(ALPNTURN)
	if turnALPN && w.isTURNHost(h.ServerName) {
		return RouteTURN
	}
	if !w.Backend && turnALPN {
		// Nowhere else to send a client that speaks no HTTP: serve it
		// and let it judge our certificate.
		return RouteTURN
	}
	return w.Web()
}

// IsHTTPStart reports whether a plain connection's first byte can begin an
// HTTP/1 request line (every method is upper-case ASCII: GET, POST, HEAD,
// PUT, OPTIONS, CONNECT, PRI for h2c...). A TURN client's first message is
// STUN, whose first byte is 0-3 (RFC 7983).
func IsHTTPStart(b byte) bool { return b >= 'A' && b <= 'Z' }
