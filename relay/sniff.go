package relay

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
	// alpnACME is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
	alpnACME = "acme-tls/1"
	// alpnHTTP1 is HTTP/1.1's ALPN protocol ID (RFC 7301).
	alpnHTTP1 = "http/1.1"
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

var (
	errNotHandshake = errors.New("relay: not a TLS handshake record")
	errNotHello     = errors.New("relay: first handshake message is not a ClientHello")
	errHelloTooBig  = errors.New("relay: ClientHello too large to inspect")
	errBadHello     = errors.New("relay: malformed ClientHello")
)

// clientHello is what routing needs from a TLS ClientHello.
type clientHello struct {
	serverName string   // SNI host name, lower case, no trailing dot; "" if absent
	alpn       []string // ALPN protocols offered, in the client's order; nil if absent
}

// offers reports whether the client offered ALPN protocol p.
func (h clientHello) offers(p string) bool { return slices.Contains(h.alpn, p) }

// parseClientHello parses the ClientHello at the start of b, which holds
// TLS records as they arrived (the handshake message may span several
// records). When b is too short it returns need > len(b): the number of
// bytes to have before calling again. It never reads past the records it
// needs and never trusts a length field it has not checked against b.
func parseClientHello(b []byte) (h clientHello, need int, err error) {
	var msg []byte // the handshake message, reassembled
	first, aliased := true, false
	off := 0
	for records := 1; ; records++ {
		if records > maxHelloRecords {
			return clientHello{}, 0, errHelloTooBig
		}
		if len(b) < off+recordHeaderLen {
			return clientHello{}, off + recordHeaderLen, nil
		}
		if b[off] != recordTypeHandshake {
			return clientHello{}, 0, errNotHandshake
		}
		n := int(b[off+3])<<8 | int(b[off+4])
		if n == 0 || n > maxRecordPayload {
			return clientHello{}, 0, errBadHello
		}
		end := off + recordHeaderLen + n
		if len(b) < end {
			return clientHello{}, end, nil
		}
		frag := b[off+recordHeaderLen : end]
		switch {
		case first:
			msg = frag // the usual case: one record, no copy
			first, aliased = false, true
		case len(msg)+len(frag) > handshakeHeaderLen+maxClientHello:
			return clientHello{}, 0, errHelloTooBig
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
			return clientHello{}, 0, errNotHello
		}
		bodyLen := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if bodyLen > maxClientHello {
			return clientHello{}, 0, errHelloTooBig
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
func parseClientHelloBody(body []byte) (clientHello, error) {
	s := cryptobyte.String(body)
	var version uint16
	var random, sessionID, suites, compression cryptobyte.String
	if !s.ReadUint16(&version) ||
		!s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return clientHello{}, errBadHello
	}
	var h clientHello
	if s.Empty() {
		return h, nil // no extensions at all (SSL 3.0-style hello)
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return clientHello{}, errBadHello
	}
	seenSNI, seenALPN := false, false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return clientHello{}, errBadHello
		}
		switch typ {
		case extServerName:
			// RFC 8446 §4.2: "There MUST NOT be more than one extension
			// of the same type in a given extension block."
			if seenSNI {
				return clientHello{}, errBadHello
			}
			seenSNI = true
			name, err := parseSNI(data)
			if err != nil {
				return clientHello{}, err
			}
			h.serverName = name
		case extALPN:
			if seenALPN {
				return clientHello{}, errBadHello
			}
			seenALPN = true
			protos, err := parseALPN(data)
			if err != nil {
				return clientHello{}, err
			}
			h.alpn = protos
		}
	}
	return h, nil
}

// parseSNI returns the host_name of a server_name extension (RFC 6066 §3).
func parseSNI(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", errBadHello
	}
	name := ""
	for !list.Empty() {
		var typ uint8
		var v cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&v) {
			return "", errBadHello
		}
		if typ != sniHostName || name != "" {
			continue // unknown name types are skipped; the first host_name wins
		}
		if len(v) == 0 {
			return "", errBadHello
		}
		name = normalizeHost(string(v))
	}
	return name, nil
}

// parseALPN returns the protocols of an ALPN extension (RFC 7301 §3.1).
func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, errBadHello
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		// "Empty strings MUST NOT be included."
		if !list.ReadUint8LengthPrefixed(&p) || len(p) == 0 {
			return nil, errBadHello
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

// normalizeHost lower-cases a DNS name and drops a trailing dot, the form
// SNI values and configured names are compared in.
func normalizeHost(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// peekClientHello reads, without consuming, the ClientHello at the start of
// br. The caller bounds the wait with a read deadline.
func peekClientHello(br *bufio.Reader) (clientHello, error) {
	need := recordHeaderLen
	for {
		if need > br.Size() {
			return clientHello{}, errHelloTooBig
		}
		b, err := br.Peek(need)
		if err != nil {
			return clientHello{}, err
		}
		h, more, err := parseClientHello(b)
		if err != nil || more == 0 {
			return h, err
		}
		need = more
	}
}

// route is where a connection on a stream listener goes.
type route uint8

const (
	routeTURN    route = iota // served here as TURN (over TLS: after our handshake)
	routeBackend              // forwarded byte for byte to the web backend
	routePage                 // no backend: answered with the built-in page
)

func (r route) String() string {
	switch r {
	case routeTURN:
		return "turn"
	case routeBackend:
		return "web backend"
	case routePage:
		return "built-in page"
	}
	return "unknown"
}

// webRouter decides, from a ClientHello or the first byte of a plain
// connection, whether it is TURN or belongs to the web site.
type webRouter struct {
	backend   bool     // a web backend is configured
	turnHosts []string // normalized; empty: every name is a TURN name
	acmeHosts []string // normalized names we answer TLS-ALPN-01 challenges for
}

// isTURNHost reports whether an SNI value names this TURN server. Clients
// that send no SNI (TURN clients dialling an IP address) are TURN.
func (w *webRouter) isTURNHost(sni string) bool {
	return sni == "" || len(w.turnHosts) == 0 || slices.Contains(w.turnHosts, sni)
}

// web is where traffic for the web site goes: the backend, or the
// built-in page when there is none.
func (w *webRouter) web() route {
	if w.backend {
		return routeBackend
	}
	return routePage
}

// routeTLS decides where a TLS connection goes from its ClientHello.
func (w *webRouter) routeTLS(h clientHello) route {
	// RFC 8737 §3: the CA connects with ALPN acme-tls/1 and the SNI of the
	// name being validated. Ours are answered by our TLS stack; anyone
	// else's belong to the web site, which may run its own ACME client.
	if h.offers(alpnACME) {
		if slices.Contains(w.acmeHosts, h.serverName) {
			return routeTURN
		}
		return w.web()
	}
	// RFC 7443: TURN clients offer "stun.turn" or no ALPN at all. A client
	// offering only other protocols (a browser: h2, http/1.1) is no TURN
	// client, whatever name it asks for.
	turnALPN := len(h.alpn) == 0 || h.offers(alpnTURN)
	if turnALPN && w.isTURNHost(h.serverName) {
		return routeTURN
	}
	if !w.backend && turnALPN {
		// Nowhere else to send a client that speaks no HTTP: serve it
		// and let it judge our certificate.
		return routeTURN
	}
	return w.web()
}

// isHTTPStart reports whether a plain connection's first byte can begin an
// HTTP/1 request line (every method is upper-case ASCII: GET, POST, HEAD,
// PUT, OPTIONS, CONNECT, PRI for h2c...). A TURN client's first message is
// STUN, whose first byte is 0-3 (RFC 7983).
func isHTTPStart(b byte) bool { return b >= 'A' && b <= 'Z' }
