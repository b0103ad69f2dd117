package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay/proto"
)

// The TURN control plane of the load generator: a small client that
// authenticates with long-term credentials (RFC 8489 §9.2) and sends
// Allocate, ChannelBind, CreatePermission and Refresh. It is used only to set
// up and tear down; the data path writes frames itself.

// ctrlConn carries STUN messages to one server over one transport.
type ctrlConn interface {
	writeMsg(b []byte) error
	// readMsg returns the next STUN message (other frames are skipped),
	// valid until the next call.
	readMsg(deadline time.Time) ([]byte, error)
	// reliable says whether lost requests need retransmitting.
	reliable() bool
	close() error
}

// udpCtrl is a connected UDP socket.
type udpCtrl struct {
	c   *net.UDPConn
	buf []byte
}

func (u *udpCtrl) writeMsg(b []byte) error { _, err := u.c.Write(b); return err }

func (u *udpCtrl) readMsg(deadline time.Time) ([]byte, error) {
	if err := u.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		n, err := u.c.Read(u.buf)
		if err != nil {
			return nil, err
		}
		if n > 0 && proto.Classify(u.buf[0]) == proto.KindSTUN {
			return u.buf[:n], nil
		}
	}
}

func (u *udpCtrl) reliable() bool { return false }
func (u *udpCtrl) close() error   { return u.c.Close() }

// streamCtrl is a TCP or TLS connection, framed per RFC 8656 §12.5.
type streamCtrl struct {
	c  net.Conn
	br *bufio.Reader
	f  *proto.Framer
}

func newStreamCtrl(c net.Conn) *streamCtrl {
	br := bufio.NewReaderSize(c, 64<<10+64)
	return &streamCtrl{c: c, br: br, f: proto.NewFramer(br)}
}

func (s *streamCtrl) writeMsg(b []byte) error { _, err := s.c.Write(b); return err }

func (s *streamCtrl) readMsg(deadline time.Time) ([]byte, error) {
	if err := s.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		frame, kind, err := s.f.Next()
		if err != nil {
			return nil, err
		}
		if kind == proto.KindSTUN {
			return frame, nil
		}
	}
}

func (s *streamCtrl) reliable() bool { return true }
func (s *streamCtrl) close() error   { return s.c.Close() }

// dialCtrl connects to the server over transport ("udp", "tcp" or "tls").
// A valid local address binds the UDP socket's source address.
func dialCtrl(transport, server string, tlsConf *tls.Config, timeout time.Duration, local netip.Addr) (ctrlConn, error) {
	switch transport {
	case "udp":
		raddr, err := net.ResolveUDPAddr("udp", server)
		if err != nil {
			return nil, err
		}
		var laddr *net.UDPAddr
		if local.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
		}
		c, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			return nil, err
		}
		return &udpCtrl{c: c, buf: make([]byte, 1500)}, nil
	case "tcp":
		c, err := net.DialTimeout("tcp", server, timeout)
		if err != nil {
			return nil, err
		}
		return newStreamCtrl(c), nil
	case "tls":
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: tlsConf}
		c, err := d.Dial("tcp", server)
		if err != nil {
			return nil, err
		}
		return newStreamCtrl(c), nil
	}
	return nil, fmt.Errorf("unknown transport %q: use udp, tcp or tls", transport)
}

// creds are long-term credentials (RFC 8489 §9.2).
type creds struct {
	user, password string
}

// turnClient runs requests over one ctrlConn. It remembers the realm and
// nonce from the first 401, as a real client does.
type turnClient struct {
	conn    ctrlConn
	creds   creds
	timeout time.Duration // total time allowed for one request

	realm     stun.Realm
	nonce     stun.Nonce
	integrity stun.MessageIntegrity
	authed    bool
	resp      stun.Message
}

// errorCodeError is a STUN error response.
type errorCodeError struct {
	method stun.Method
	code   stun.ErrorCode
	reason string
}

func (e *errorCodeError) Error() string {
	return fmt.Sprintf("%s: error %d %s", e.method, e.code, e.reason)
}

// xorAddr adds an XOR-encoded address attribute.
type xorAddr struct {
	t  stun.AttrType
	ap netip.AddrPort
}

func (x xorAddr) AddTo(m *stun.Message) error { return proto.AddXORAddress(m, x.t, x.ap) }

// do sends a request of method with attrs, authenticating as needed, and
// returns the success response (valid until the next call).
func (c *turnClient) do(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for attempt := 0; attempt < 3; attempt++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if c.authed {
			setters = append(setters, stun.NewUsername(c.creds.user), c.realm, c.nonce, c.integrity)
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			return nil, fmt.Errorf("%s: build: %w", method, err)
		}
		if err := c.exchange(req); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if c.resp.Type.Class == stun.ClassSuccessResponse {
			return &c.resp, nil
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(&c.resp); err != nil {
			return nil, fmt.Errorf("%s: error response without ERROR-CODE: %w", method, err)
		}
		switch ec.Code {
		case stun.CodeUnauthorized, stun.CodeStaleNonce:
			if c.authed && ec.Code == stun.CodeUnauthorized {
				return nil, &errorCodeError{method, ec.Code, string(ec.Reason) + " (check -user and -password)"}
			}
			// GetFrom points into c.resp.Raw, which the next response
			// overwrites: keep copies.
			if err := c.nonce.GetFrom(&c.resp); err != nil {
				return nil, fmt.Errorf("%s: %d without NONCE", method, ec.Code)
			}
			c.nonce = append(stun.Nonce(nil), c.nonce...)
			if ec.Code == stun.CodeUnauthorized || !c.authed {
				if err := c.realm.GetFrom(&c.resp); err != nil {
					return nil, fmt.Errorf("%s: 401 without REALM", method)
				}
				c.realm = append(stun.Realm(nil), c.realm...)
				c.integrity = stun.NewLongTermIntegrity(c.creds.user, c.realm.String(), c.creds.password)
			}
			c.authed = true
			continue
		}
		return nil, &errorCodeError{method, ec.Code, string(ec.Reason)}
	}
	return nil, fmt.Errorf("%s: still unauthorized after 3 attempts", method)
}

// exchange sends req and reads the response with its transaction ID into
// c.resp, retransmitting over UDP (RFC 8489 §6.2.1, with a short initial
// RTO since the server is local).
func (c *turnClient) exchange(req *stun.Message) error {
	deadline := time.Now().Add(c.timeout)
	rto := 100 * time.Millisecond
	if c.conn.reliable() {
		rto = c.timeout
	}
	for {
		if err := c.conn.writeMsg(req.Raw); err != nil {
			return err
		}
		wait := time.Now().Add(rto)
		if wait.After(deadline) {
			wait = deadline
		}
		for {
			b, err := c.conn.readMsg(wait)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return err
			}
			c.resp.Raw = append(c.resp.Raw[:0], b...)
			if err := c.resp.Decode(); err != nil {
				continue
			}
			if c.resp.TransactionID == req.TransactionID {
				return nil
			}
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no response within %v", c.timeout)
		}
		rto *= 2
	}
}

// allocate makes a UDP allocation and returns its relayed address.
func (c *turnClient) allocate() (netip.AddrPort, error) {
	m, err := c.do(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
	if err != nil {
		return netip.AddrPort{}, err
	}
	relayed, err := proto.GetXORAddress(m, stun.AttrXORRelayedAddress)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("Allocate: %w", err)
	}
	return relayed, nil
}

// channelBind binds number to peer (RFC 8656 §12.1).
func (c *turnClient) channelBind(number uint16, peer netip.AddrPort) error {
	_, err := c.do(stun.MethodChannelBind, proto.ChannelNumber(number), xorAddr{stun.AttrXORPeerAddress, peer})
	return err
}

// permit installs a permission for peer (RFC 8656 §9).
func (c *turnClient) permit(peer netip.AddrPort) error {
	_, err := c.do(stun.MethodCreatePermission, xorAddr{stun.AttrXORPeerAddress, peer})
	return err
}

// deallocate deletes the allocation (Refresh with LIFETIME 0, RFC 8656 §7).
func (c *turnClient) deallocate() error {
	_, err := c.do(stun.MethodRefresh, proto.Lifetime(0))
	return err
}

// binding sends a STUN Binding request (no authentication).
func (c *turnClient) binding() error {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	return c.exchange(req)
}
