package relay_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// The RFC 8489 security features through a real server: an RFC 8489 client
// built by hand (pion/turn v5's client only does MD5 with
// MESSAGE-INTEGRITY; TestRelayEveryTransport shows that one still works on
// every transport).

// PASSWORD-ALGORITHMS values (RFC 8489 §14.11): algorithm, parameter
// length 0, for each entry.
const (
	listSHA256First = "\x00\x02\x00\x00\x00\x01\x00\x00"
	listMD5First    = "\x00\x01\x00\x00\x00\x02\x00\x00"
)

// rfc8489Client speaks RFC 8489 long-term authentication by hand over UDP,
// TCP or TLS: it reads the nonce cookie and PASSWORD-ALGORITHMS of the
// challenge, takes the first algorithm on the list (§9.2.5), echoes the
// list, signs with MESSAGE-INTEGRITY-SHA256 and sends USERHASH when the
// cookie asks for username anonymity.
type rfc8489Client struct {
	t      *testing.T
	conn   net.Conn
	stream bool
	user   string
	pass   string

	nonce     string
	list      []byte // PASSWORD-ALGORITHMS as received
	alg       auth.PasswordAlgorithm
	anonymous bool
	key       []byte
}

func dialRFC8489(t *testing.T, kind relay.ListenerKind, addr, user, pass string) *rfc8489Client {
	t.Helper()
	c := &rfc8489Client{t: t, user: user, pass: pass, stream: kind != relay.UDP}
	switch kind {
	case relay.UDP:
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.conn = conn
	case relay.TLS:
		c.conn = turntest.DialTLS(t, addr)
	default:
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.conn = conn
	}
	t.Cleanup(func() { _ = c.conn.Close() })
	return c
}

// read returns the next STUN message from the server.
func (c *rfc8489Client) read() (*stun.Message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
	var raw []byte
	if c.stream {
		hdr := make([]byte, 20)
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			return nil, err
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
		if _, err := io.ReadFull(c.conn, body); err != nil {
			return nil, err
		}
		raw = append(hdr, body...)
	} else {
		buf := make([]byte, 1500)
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		raw = buf[:n]
	}
	m := &stun.Message{Raw: raw}
	if err := m.Decode(); err != nil {
		c.t.Fatalf("undecodable message from the server: %v", err)
	}
	return m, nil
}

// exchange sends req (again, over UDP, until answered) and returns the
// response with its transaction ID.
func (c *rfc8489Client) exchange(req *stun.Message) *stun.Message {
	c.t.Helper()
	for try := 0; try < 5; try++ {
		if try == 0 || !c.stream {
			if _, err := c.conn.Write(req.Raw); err != nil {
				c.t.Fatal(err)
			}
		}
		for {
			resp, err := c.read()
			if err != nil {
				break
			}
			if resp.TransactionID == req.TransactionID {
				return resp
			}
		}
	}
	c.t.Fatal("no response")
	return nil
}

// challenge sends an unauthenticated Allocate and takes the 401's REALM,
// NONCE and PASSWORD-ALGORITHMS, checking what RFC 8489 §9.2.4 asks of it.
func (c *rfc8489Client) challenge(wantCookie, wantList string) {
	c.t.Helper()
	resp := c.exchange(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		proto.RequestedTransport(proto.ProtoUDP)))
	wantCode(c.t, "first Allocate", resp, stun.CodeUnauthorized)
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(resp) != nil || realm.String() != testRealm || nonce.GetFrom(resp) != nil {
		c.t.Fatalf("401 without REALM %q and NONCE: %v", testRealm, resp)
	}
	c.nonce = nonce.String()
	if !strings.HasPrefix(c.nonce, wantCookie) {
		c.t.Fatalf("NONCE %q does not start with the nonce cookie %q", c.nonce, wantCookie)
	}
	c.anonymous = wantCookie == "obMatJos2wAAD"
	list, err := resp.Get(stun.AttrPasswordAlgorithms)
	if err != nil || string(list) != wantList {
		c.t.Fatalf("401 PASSWORD-ALGORITHMS = %x (%v), want %x", list, err, wantList)
	}
	for _, a := range []stun.AttrType{stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrUsername, stun.AttrUserhash} {
		if resp.Contains(a) {
			c.t.Errorf("401 carries %v", a)
		}
	}
	c.list = list
	// §9.2.5: "a PASSWORD-ALGORITHM attribute with the first algorithm
	// supported on the list" (both are supported here).
	c.alg = auth.PasswordAlgorithm(binary.BigEndian.Uint16(list))
	c.key = auth.Key(c.alg, c.user, testRealm, c.pass)
}

// request builds a signed request: identity, REALM, NONCE, the algorithm
// attributes (as given: the client's echo by default) and
// MESSAGE-INTEGRITY-SHA256.
func (c *rfc8489Client) request(method stun.Method, algAttrs []stun.Setter, setters ...stun.Setter) *stun.Message {
	s := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, setters...)
	if c.anonymous {
		h := auth.Userhash(c.user, testRealm)
		s = append(s, stun.RawAttribute{Type: stun.AttrUserhash, Value: h[:]})
	} else {
		s = append(s, stun.NewUsername(c.user))
	}
	s = append(s, stun.NewRealm(testRealm), stun.NewNonce(c.nonce))
	if algAttrs == nil {
		algAttrs = []stun.Setter{
			stun.RawAttribute{Type: stun.AttrPasswordAlgorithms, Value: c.list},
			stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: []byte{0, byte(c.alg), 0, 0}},
		}
	}
	s = append(s, algAttrs...)
	return stun.MustBuild(append(s, auth.MessageIntegritySHA256(c.key), stun.Fingerprint)...)
}

// authed sends a signed request and checks that a success or error
// response carries MESSAGE-INTEGRITY-SHA256 under the key, and no
// MESSAGE-INTEGRITY (RFC 8489 §9.2.4: "Any response generated by the server
// MUST include the MESSAGE-INTEGRITY-SHA256 attribute").
func (c *rfc8489Client) authed(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	resp := c.exchange(c.request(method, nil, setters...))
	if err := auth.MessageIntegritySHA256(c.key).Check(resp); err != nil {
		c.t.Fatalf("%v response: %v", method, err)
	}
	if resp.Contains(stun.AttrMessageIntegrity) {
		c.t.Errorf("%v response carries MESSAGE-INTEGRITY too", method)
	}
	return resp
}

func TestRFC8489ClientEveryTransport(t *testing.T) {
	s := startServer(t)
	peer := turntest.EchoPeer(t)
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, kind := range []relay.ListenerKind{relay.UDP, relay.TCP, relay.TLS} {
		t.Run(kind.String(), func(t *testing.T) {
			c := dialRFC8489(t, kind, s.addrs[kind], testUser, testPassword)
			// The test server has REST secrets: no username anonymity.
			c.challenge("obMatJos2gAAB", listSHA256First)
			if c.alg != auth.AlgorithmSHA256 {
				t.Fatalf("client chose %v", c.alg)
			}
			resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
			wantCode(t, "Allocate", resp, 0)
			relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
			if err != nil {
				t.Fatal(err)
			}
			wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peerAP)), 0)
			// An authenticated error answer is signed the same way.
			wantCode(t, "second Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)),
				stun.CodeAllocMismatch)

			// Send indication out, the echo comes back as a Data indication.
			send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
				stunPeer(peerAP), proto.Data("sha-256 "+kind.String()))
			if _, err := c.conn.Write(send.Raw); err != nil {
				t.Fatal(err)
			}
			ind, err := c.read()
			if err != nil {
				t.Fatalf("no Data indication: %v", err)
			}
			var data proto.Data
			from, _ := proto.GetXORAddress(ind, stun.AttrXORPeerAddress)
			if ind.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || data.GetFrom(ind) != nil ||
				string(data) != "sha-256 "+kind.String() || from != peerAP {
				t.Fatalf("got %v %q from %v, want the echo from %v", ind.Type, data, from, peerAP)
			}
			var found bool
			s.Table().Range(func(a *allocations.Allocation) bool {
				found = found || a.Relayed == relayed && a.Username == testUser
				return true
			})
			if !found {
				t.Fatalf("no allocation %v of %s in the table", relayed, testUser)
			}
			wantCode(t, "Refresh", c.authed(stun.MethodRefresh), 0)
		})
	}
}

// TestUserhashLogin: with only static users the nonce cookie announces
// username anonymity, and a client that sends USERHASH owns its
// allocation as the user it hashes.
func TestUserhashLogin(t *testing.T) {
	a, err := auth.New(auth.Config{Realm: testRealm, Users: map[string]string{testUser: testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, withAuth(a))
	c := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], testUser, testPassword)
	c.challenge("obMatJos2wAAD", listSHA256First)
	req := c.request(stun.MethodAllocate, nil, proto.RequestedTransport(proto.ProtoUDP))
	if req.Contains(stun.AttrUsername) || !req.Contains(stun.AttrUserhash) {
		t.Fatal("client did not switch to USERHASH")
	}
	resp := c.exchange(req)
	wantCode(t, "Allocate by USERHASH", resp, 0)
	if err := auth.MessageIntegritySHA256(c.key).Check(resp); err != nil {
		t.Fatal(err)
	}
	var owner string
	s.Table().Range(func(al *allocations.Allocation) bool { owner = al.Username; return true })
	if owner != testUser {
		t.Fatalf("allocation owned by %q, want %q", owner, testUser)
	}
	// The same user by USERNAME on the same 5-tuple: the same owner.
	c.anonymous = false
	wantCode(t, "Refresh by USERNAME", c.authed(stun.MethodRefresh), 0)
	// A wrong password behind the right USERHASH is refused.
	c.anonymous, c.key = true, auth.Key(auth.AlgorithmSHA256, testUser, testRealm, "wrong")
	wantCode(t, "Refresh with a wrong key", c.exchange(c.request(stun.MethodRefresh, nil)), stun.CodeUnauthorized)
}

// TestUserhashRESTUser: a TURN REST API username cannot be found from its
// hash (the server has no table of them), so it is refused with 401; the
// server with secrets does not announce username anonymity, and the same
// credential as USERNAME works.
func TestUserhashRESTUser(t *testing.T) {
	s := startServer(t)
	user, pass := auth.MintREST(testSecret, "carol", time.Hour, time.Now())
	c := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], user, pass)
	c.challenge("obMatJos2gAAB", listSHA256First)
	c.anonymous = true
	wantCode(t, "REST user by USERHASH", c.exchange(c.request(stun.MethodAllocate, nil, proto.RequestedTransport(proto.ProtoUDP))),
		stun.CodeUnauthorized)
	c.anonymous = false
	wantCode(t, "REST user by USERNAME", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
}

// TestStoredKeyUserRFC8489Client: with a stored MD5 key configured the
// server offers MD5 first, so an RFC 8489 client of that user takes MD5
// (with MESSAGE-INTEGRITY-SHA256) and gets in; offered SHA-256 first it
// would derive a key the server cannot check.
func TestStoredKeyUserRFC8489Client(t *testing.T) {
	a, err := auth.New(auth.Config{
		Realm: testRealm,
		Keys:  map[string][]byte{"bob": auth.LongTermKey("bob", testRealm, "builder")},
		Users: map[string]string{testUser: testPassword},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, withAuth(a))
	for _, u := range []struct{ user, pass string }{{"bob", "builder"}, {testUser, testPassword}} {
		c := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], u.user, u.pass)
		c.challenge("obMatJos2wAAD", listMD5First)
		if c.alg != auth.AlgorithmMD5 {
			t.Fatalf("client chose %v", c.alg)
		}
		wantCode(t, u.user+" Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
	}
	// Were SHA-256 forced (a list the server did not send: 400 anyway), the
	// stored-key user could not verify: shown in auth's tests.
}

// TestBidDownRejected: a man in the middle who strips or edits the
// server's PASSWORD-ALGORITHMS, or clears the cookie's feature bits, gets
// the client's next request refused (RFC 8489 §9.2.1, §9.2.4), while a
// legacy client that sends neither attribute is served with MD5.
func TestBidDownRejected(t *testing.T) {
	s := startServer(t)
	c := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], testUser, testPassword)
	c.challenge("obMatJos2gAAB", listSHA256First)
	list := func(v string) stun.Setter {
		return stun.RawAttribute{Type: stun.AttrPasswordAlgorithms, Value: []byte(v)}
	}
	alg := func(a auth.PasswordAlgorithm) stun.Setter {
		return stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: []byte{0, byte(a), 0, 0}}
	}
	md5Key := auth.Key(auth.AlgorithmMD5, testUser, testRealm, testPassword)
	for _, tc := range []struct {
		name  string
		attrs []stun.Setter
		key   []byte
	}{
		{"PASSWORD-ALGORITHMS stripped", []stun.Setter{alg(auth.AlgorithmMD5)}, md5Key},
		{"PASSWORD-ALGORITHMS reordered", []stun.Setter{list(listMD5First), alg(auth.AlgorithmMD5)}, md5Key},
		{"PASSWORD-ALGORITHMS cut to MD5", []stun.Setter{list("\x00\x01\x00\x00"), alg(auth.AlgorithmMD5)}, md5Key},
		{"PASSWORD-ALGORITHM stripped", []stun.Setter{list(listSHA256First)}, c.key},
		{"PASSWORD-ALGORITHM not offered", []stun.Setter{list(listSHA256First), alg(3)}, c.key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := c.key
			c.key = tc.key
			defer func() { c.key = key }()
			resp := c.exchange(c.request(stun.MethodAllocate, tc.attrs, proto.RequestedTransport(proto.ProtoUDP)))
			wantCode(t, tc.name, resp, stun.CodeBadRequest)
			for _, a := range []stun.AttrType{stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrNonce} {
				if resp.Contains(a) {
					t.Errorf("400 carries %v", a)
				}
			}
		})
	}

	// Clearing the cookie's bits (so that the server would not check the
	// algorithms) invalidates the nonce: 438 and a fresh one.
	t.Run("feature bits cleared", func(t *testing.T) {
		nonce := c.nonce
		defer func() { c.nonce = nonce }()
		c.nonce = "obMatJos2AAAA" + nonce[len("obMatJos2AAAA"):]
		c.key = md5Key
		defer func() { c.key = auth.Key(c.alg, testUser, testRealm, testPassword) }()
		resp := c.exchange(c.request(stun.MethodAllocate, []stun.Setter{}, proto.RequestedTransport(proto.ProtoUDP)))
		wantCode(t, "cleared bits", resp, stun.CodeStaleNonce)
		if got, _ := resp.Get(stun.AttrPasswordAlgorithms); string(got) != listSHA256First {
			t.Errorf("438 PASSWORD-ALGORITHMS = %x", got)
		}
	})

	// A legacy client (Chromium, pion): neither attribute, MD5 key,
	// MESSAGE-INTEGRITY; answered with MESSAGE-INTEGRITY only.
	t.Run("legacy MD5", func(t *testing.T) {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			proto.RequestedTransport(proto.ProtoUDP), stun.NewUsername(testUser), stun.NewRealm(testRealm),
			stun.NewNonce(c.nonce), stun.MessageIntegrity(md5Key), stun.Fingerprint)
		resp := c.exchange(req)
		wantCode(t, "legacy Allocate", resp, 0)
		if err := stun.MessageIntegrity(md5Key).Check(resp); err != nil {
			t.Fatal(err)
		}
		if resp.Contains(stun.AttrMessageIntegritySHA256) {
			t.Error("legacy answer carries MESSAGE-INTEGRITY-SHA256")
		}
	})

	// Everything in order: SHA-256 on the same nonce.
	c2 := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], testUser, testPassword)
	c2.challenge("obMatJos2gAAB", listSHA256First)
	wantCode(t, "honest SHA-256 Allocate", c2.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
}

// TestSHA256StaleNonceRetry: a 438 carries PASSWORD-ALGORITHMS with the
// fresh nonce (RFC 8489 §9.2.4), and the client continues with it.
func TestSHA256StaleNonceRetry(t *testing.T) {
	s := startServer(t, withAuth(newAuth(t, time.Second)))
	c := dialRFC8489(t, relay.UDP, s.addrs[relay.UDP], testUser, testPassword)
	c.challenge("obMatJos2gAAB", listSHA256First)
	wantCode(t, "Allocate", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
	time.Sleep(2100 * time.Millisecond) // nonce lifetime is whole seconds
	resp := c.exchange(c.request(stun.MethodRefresh, nil))
	wantCode(t, "stale", resp, stun.CodeStaleNonce)
	var nonce stun.Nonce
	list, err := resp.Get(stun.AttrPasswordAlgorithms)
	if nonce.GetFrom(resp) != nil || err != nil || !bytes.Equal(list, c.list) {
		t.Fatalf("438 with NONCE %q and PASSWORD-ALGORITHMS %x (%v)", nonce, list, err)
	}
	c.nonce = nonce.String()
	wantCode(t, "Refresh with the new nonce", c.authed(stun.MethodRefresh), 0)
}
