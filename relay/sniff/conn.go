package sniff

import (
	"bufio"
	"errors"
	"net"
	"net/netip"

	"github.com/postern/postern/relay/proto"
)

// First is what a stream connection's first byte says it is (RFC 7983 for
// STUN and TLS; HTTP/1 request lines begin with an upper-case method).
type First uint8

// Kinds of first byte.
const (
	FirstOther First = iota // STUN, ChannelData or anything else: TURN/TCP decides
	FirstTLS                // a TLS record (20-63)
	FirstHTTP               // 'A'-'Z': a plain HTTP request line
)

// Conn is a stream connection on its way to being served: the bytes it has
// sent are read into a buffer and inspected without being consumed, so
// whatever serves it (a TLS handshake, the TURN framer, the web backend)
// reads them first. Reads drain the buffer, then go to the connection
// directly: once the peeked bytes are consumed (a TLS handshake has read
// its ClientHello), the buffer is dropped instead of copying every later
// read through it. One goroutine reads a connection, so Conn needs no lock.
type Conn struct {
	net.Conn
	// Client is the connection's client: its peer, or the address a
	// trusted PROXY header named.
	Client netip.AddrPort
	r      *bufio.Reader // nil once drained or detached
	br     *bufio.Reader // the buffer, also after r is dropped
}

// Accept is the first step after accept: it reads a PROXY protocol header
// when c comes from a source in trusted, and fails for a header from
// anyone else (ErrUntrustedProxyHeader). bufSize is the connection's
// buffer from now on. The caller bounds the wait with a read deadline.
func Accept(c net.Conn, bufSize int, trusted []netip.Prefix) (*Conn, error) {
	br := bufio.NewReaderSize(c, bufSize)
	client, err := ProxyClient(br, peerAddr(c), trusted)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, Client: client, r: br, br: br}, nil
}

// peerAddr is c's peer address (IPv4-mapped IPv6 unmapped), or the zero
// AddrPort when it is not TCP.
func peerAddr(c net.Conn) netip.AddrPort {
	if t, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// First waits for the connection's first byte and classifies it. An error
// means the client closed or stayed silent before saying anything.
func (c *Conn) First() (First, error) {
	b, err := c.br.Peek(1)
	if err != nil {
		return FirstOther, err
	}
	switch {
	case proto.Classify(b[0]) == proto.KindTLS:
		return FirstTLS, nil
	case IsHTTPStart(b[0]):
		return FirstHTTP, nil
	}
	return FirstOther, nil
}

// Hello peeks the ClientHello of a connection whose first byte is TLS.
// One larger than the buffer (rare) grows it once, to HelloBufSize: the
// new buffer reads through the old one, which it drains at its first read
// (it is larger), so Read still sees every byte in order.
func (c *Conn) Hello() (ClientHello, error) {
	h, err := PeekClientHello(c.br)
	if errors.Is(err, ErrHelloTooBig) && c.br.Size() < HelloBufSize {
		c.br = bufio.NewReaderSize(c.br, HelloBufSize)
		c.r = c.br
		h, err = PeekClientHello(c.br)
	}
	return h, err
}

// Reader is the connection's buffer: its peeked bytes, then the rest of
// the stream.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Read reads the peeked bytes, then the connection.
func (c *Conn) Read(b []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(b)
		}
		c.r = nil
	}
	return c.Conn.Read(b)
}

// Detach returns the buffer for reuse once nothing in it is left to read
// (a TLS handshake consumed what was sniffed), and Read stops reading
// through it; it returns nil, and changes nothing, while bytes remain.
func (c *Conn) Detach() *bufio.Reader {
	if c.br.Buffered() > 0 {
		return nil
	}
	c.r = nil
	return c.br
}
