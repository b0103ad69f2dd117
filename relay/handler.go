package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay/proto"
)

// handleRequest answers one STUN request from the client of ft. resp is
// scratch space the caller reuses between requests.
func (s *Server) handleRequest(req, resp *stun.Message, ft allocations.FiveTuple, sink allocations.ClientSink, relayIP netip.Addr) {
	if req.Type.Class != stun.ClassRequest {
		return // responses and unknown indications are not ours to answer
	}
	s.stats.request(req.Type.Method)
	r := request{s: s, req: req, resp: resp, ft: ft, sink: sink, relayIP: relayIP}
	if req.Type.Method == stun.MethodBinding {
		r.binding()
		return
	}
	switch req.Type.Method {
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind:
	default:
		// RFC 8489 §6.3.1: a request with a method the server does not know.
		r.fail(newError(stun.CodeBadRequest, "Bad Request: unsupported method"), nil)
		return
	}
	if unknown := unknownRequired(req); len(unknown) > 0 {
		// RFC 8489 §6.3.1.1: unknown comprehension-required attributes → 420.
		r.fail(newError(stun.CodeUnknownAttribute, "Unknown Attribute"), nil, stun.UnknownAttributes(unknown))
		return
	}
	id, ok := r.authenticate()
	if !ok {
		return
	}
	var err error
	switch req.Type.Method {
	case stun.MethodAllocate:
		err = r.allocate(id)
	case stun.MethodRefresh:
		err = r.refresh(id)
	case stun.MethodCreatePermission:
		err = r.createPermission(id)
	case stun.MethodChannelBind:
		err = r.channelBind(id)
	}
	if err != nil {
		var extra []stun.Setter
		if se, ok := err.(*stunError); ok {
			extra = se.extra
		}
		r.fail(err, id.Key, extra...)
	}
}

// alternateServer is the ALTERNATE-SERVER attribute (RFC 8489 §14.15):
// same encoding as MAPPED-ADDRESS, not XORed.
type alternateServer netip.AddrPort

func (a alternateServer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(a)
	addr := stun.AlternateServer{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	return addr.AddTo(m)
}

// request is one request being answered.
type request struct {
	s         *Server
	req, resp *stun.Message
	ft        allocations.FiveTuple
	sink      allocations.ClientSink
	relayIP   netip.Addr
	// proven: the request's MESSAGE-INTEGRITY verified although it did
	// not authenticate (a stale nonce): its answer is not rate-limited.
	proven bool
}

// start begins a response of the given class to the request.
func (r *request) start(class stun.MessageClass) {
	r.resp.Reset()
	r.resp.Type = stun.NewType(r.req.Type.Method, class)
	r.resp.TransactionID = r.req.TransactionID
	r.resp.WriteHeader()
}

// send finishes the response (SOFTWARE and MESSAGE-INTEGRITY when the
// request was authenticated, FINGERPRINT) and writes it to the client.
// Answers to unauthenticated requests, Binding included, carry no SOFTWARE:
// it would only tell a scanner what we run and add to the amplification
// factor (RFC 8489 §14.14: "The attribute has no impact on operation of
// the protocol and serves only as a tool for diagnostic and debugging
// purposes").
func (r *request) send(key []byte) {
	if key != nil {
		_ = r.s.software.AddTo(r.resp)
	}
	if key != nil {
		_ = stun.MessageIntegrity(key).AddTo(r.resp)
	}
	_ = stun.Fingerprint.AddTo(r.resp)
	if err := r.sink.WriteToClient(r.resp.Raw); err != nil {
		r.s.log.Debug("write response", "client", r.ft.Client.String(), "err", err)
	}
}

// fail answers with the error code err maps to. Answers over UDP to
// requests that did not authenticate (key nil) are rate-limited per client
// address (allowAnswer), unless the request proved its key (staleNonce).
func (r *request) fail(err error, key []byte, extra ...stun.Setter) {
	if key == nil && !r.proven && !r.allowAnswer(answerUnauth) {
		return
	}
	code, reason := errorCode(err)
	r.s.stats.requestError(r.req.Type.Method, code)
	r.start(stun.ClassErrorResponse)
	_ = stun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)}.AddTo(r.resp)
	for _, set := range extra {
		_ = set.AddTo(r.resp)
	}
	switch {
	case code == stun.CodeServerError:
		r.s.log.Error("request failed", "method", r.req.Type.Method.String(), "client", r.ft.Client.String(), "err", err)
	case code != stun.CodeUnauthorized || key != nil:
		// 401 challenges are every client's first answer: not worth a line.
		r.s.log.Debug("request refused", "method", r.req.Type.Method.String(), "client", r.ft.Client.String(),
			"transport", r.ft.Transport.String(), "code", int(code), "reason", reason)
	}
	r.send(key)
}

// challenge answers 401 or 438 with a fresh NONCE and the REALM, so the
// client can (re)compute its credentials (RFC 8489 §9.2.4).
func (r *request) challenge(code stun.ErrorCode, reason string) {
	r.fail(newError(code, reason), nil,
		stun.NewRealm(r.s.auth().Realm()),
		stun.NewNonce(r.s.auth().Nonce(r.ft.Client.Addr())))
}

// authenticate applies the long-term credential mechanism (RFC 8489 §9.2.4)
// and answers the client itself when it fails.
func (r *request) authenticate() (auth.Identity, bool) {
	if !r.req.Contains(stun.AttrMessageIntegrity) {
		r.challenge(stun.CodeUnauthorized, "Unauthorized")
		return auth.Identity{}, false
	}
	var nonce stun.Nonce
	if !r.req.Contains(stun.AttrUsername) || !r.req.Contains(stun.AttrRealm) || nonce.GetFrom(r.req) != nil {
		r.fail(newError(stun.CodeBadRequest, "Bad Request: MESSAGE-INTEGRITY without USERNAME, REALM and NONCE"), nil)
		return auth.Identity{}, false
	}
	if err := r.s.auth().CheckNonce(nonce.String(), r.ft.Client.Addr()); err != nil {
		r.staleNonce(err)
		return auth.Identity{}, false
	}
	id, err := r.s.auth().Verify(r.req)
	if err != nil {
		r.s.stats.authFailed(err)
		r.logAuthFailure(err)
		r.challenge(stun.CodeUnauthorized, "Unauthorized")
		return auth.Identity{}, false
	}
	return id, true
}

// binding answers a Binding request with the client's reflexive address
// (RFC 8489 §7.3.1). It needs no authentication; over UDP its answers are
// rate-limited per client address like the unauthenticated ones, with a
// budget of their own (Config.BindingRate).
func (r *request) binding() {
	if !r.allowAnswer(answerBinding) {
		return
	}
	r.start(stun.ClassSuccessResponse)
	_ = proto.AddXORAddress(r.resp, stun.AttrXORMappedAddress, r.ft.Client)
	r.send(nil)
}

// lifetime computes the lifetime to grant (RFC 8656 §7.2 and §7.3): the
// client's request capped at the maximum, and never below the default.
// A request for 0 is returned as 0 (deletion, Refresh only).
func (r *request) lifetime() time.Duration {
	var lt proto.Lifetime
	if err := lt.GetFrom(r.req); err != nil {
		return r.s.cfg.DefaultLifetime
	}
	d := time.Duration(lt)
	if d == 0 {
		return 0
	}
	d = min(d, r.s.cfg.MaxLifetime)
	return max(d, r.s.cfg.DefaultLifetime)
}

// allocate implements RFC 8656 §7.2.
func (r *request) allocate(id auth.Identity) error {
	if a := r.s.table.Get(r.ft); a != nil {
		// A retransmission of the request that made the allocation gets
		// the same success response; anything else is a mismatch.
		if a.TransactionID == r.req.TransactionID {
			r.allocateSuccess(a, time.Until(a.Expires()), id.Key, nil)
			return nil
		}
		return newError(stun.CodeAllocMismatch, "Allocation Mismatch: this 5-tuple already has an allocation")
	}
	if r.s.Draining() {
		// Draining: existing allocations run on, new ones go elsewhere
		// (RFC 8489 §10: 300 Try Alternate with ALTERNATE-SERVER, when an
		// alternate is configured) or are refused for capacity.
		if alt := r.s.cfg.AlternateServer; alt.IsValid() {
			return &stunError{code: stun.CodeTryAlternate, reason: "Try Alternate: this server is draining",
				extra: []stun.Setter{alternateServer(alt)}}
		}
		return newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: this server is draining")
	}
	var transport proto.RequestedTransport
	if err := transport.GetFrom(r.req); err != nil {
		return newError(stun.CodeBadRequest, "Bad Request: missing or malformed REQUESTED-TRANSPORT")
	}
	if transport != proto.ProtoUDP {
		return newError(stun.CodeUnsupportedTransProto, "Unsupported Transport Protocol: only UDP relaying is offered")
	}
	var evenPort proto.EvenPort
	hasEvenPort := evenPort.GetFrom(r.req) == nil
	var token proto.ReservationToken
	hasToken := token.GetFrom(r.req) == nil
	if hasToken && (hasEvenPort || r.req.Contains(stun.AttrRequestedAddressFamily)) {
		// RFC 8656 §7.2: RESERVATION-TOKEN excludes both.
		return newError(stun.CodeBadRequest, "Bad Request: RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY")
	}
	relayIP := r.relayIP
	var family proto.RequestedAddressFamily
	if err := family.GetFrom(r.req); err == nil {
		switch {
		case family == proto.FamilyIPv4 && relayIP.Is4(), family == proto.FamilyIPv6 && relayIP.Is6():
		default:
			return newError(stun.CodeAddrFamilyNotSupported, "Address Family not Supported")
		}
	}
	// DONT-FRAGMENT is accepted: our relay sockets never fragment by
	// themselves beyond what the kernel's path-MTU logic does.
	lifetime := r.lifetime()
	var (
		conn     *net.UDPConn
		reserved [8]byte // the token of the port reserved after ours, if any
		err      error
	)
	switch {
	case hasToken:
		// RFC 8656 §7.2: the socket reserved under the token, or 508.
		if conn = r.s.reserved.take(token); conn == nil {
			return newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: unknown or expired reservation token")
		}
	case hasEvenPort && evenPort.ReservePort:
		conn, reserved, err = r.s.reserved.listenEvenPair(relayIP)
	default:
		conn, err = r.s.listenRelay(relayIP, hasEvenPort)
	}
	if err != nil {
		return err
	}
	out, err := newUDPOut(conn)
	if err != nil {
		r.s.ports.Close(conn)
		return err
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	advertised := unmapAddrPort(local)
	if ext := r.s.cfg.ExternalIP.Public(advertised.Addr()); ext.IsValid() {
		advertised = netip.AddrPortFrom(ext, local.Port())
	}
	a := &allocations.Allocation{
		FiveTuple:     r.ft,
		Username:      id.Username,
		User:          id.User,
		Key:           id.Key,
		Relayed:       advertised,
		Conn:          conn,
		Raw:           out.raw,
		Sink:          r.sink,
		Created:       time.Now(),
		TransactionID: r.req.TransactionID,
	}
	if err := r.s.table.Create(a, lifetime); err != nil {
		r.s.ports.Close(conn)
		if c := r.s.reserved.take(reserved[:]); c != nil {
			r.s.reserved.release(c)
		}
		return err
	}
	r.s.stats.allocationCreated(r.ft)
	r.s.relays.Go(func() { r.s.relayFromPeers(a) })
	r.s.log.Info("allocation created", "id", a.ID, "user", id.Username, "client", r.ft.Client.String(),
		"transport", r.ft.Transport.String(), "relayed", advertised.String(), "lifetime", lifetime)
	var tokenAttr []byte
	if reserved != ([8]byte{}) {
		tokenAttr = reserved[:]
	}
	r.allocateSuccess(a, lifetime, id.Key, tokenAttr)
	return nil
}

// allocateSuccess answers an Allocate; token, when not nil, is the
// RESERVATION-TOKEN of the port reserved after this one.
func (r *request) allocateSuccess(a *allocations.Allocation, lifetime time.Duration, key, token []byte) {
	r.start(stun.ClassSuccessResponse)
	_ = proto.AddXORAddress(r.resp, stun.AttrXORRelayedAddress, a.Relayed)
	_ = proto.Lifetime(lifetime.Truncate(time.Second)).AddTo(r.resp)
	if token != nil {
		_ = proto.ReservationToken(token).AddTo(r.resp)
	}
	_ = proto.AddXORAddress(r.resp, stun.AttrXORMappedAddress, r.ft.Client)
	r.send(key)
}

// owned returns the allocation of this 5-tuple, checking it belongs to the
// authenticated user (RFC 8656 §7.3, §9.2, §12.2: 437 and 441).
func (r *request) owned(id auth.Identity) (*allocations.Allocation, error) {
	a := r.s.table.Get(r.ft)
	if a == nil {
		return nil, newError(stun.CodeAllocMismatch, "Allocation Mismatch: no allocation for this 5-tuple")
	}
	if a.Username != id.Username {
		return nil, newError(stun.CodeWrongCredentials, "Wrong Credentials: the allocation belongs to another username")
	}
	return a, nil
}

// refresh implements RFC 8656 §7.3; LIFETIME 0 deletes at once.
func (r *request) refresh(id auth.Identity) error {
	a, err := r.owned(id)
	if err != nil {
		return err
	}
	var family proto.RequestedAddressFamily
	if err := family.GetFrom(r.req); err == nil {
		if (family == proto.FamilyIPv4) != a.Relayed.Addr().Is4() {
			return newError(stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch")
		}
	}
	lifetime := r.lifetime()
	if lifetime == 0 {
		r.s.table.Delete(r.ft)
	} else {
		a.Refresh(lifetime)
	}
	r.start(stun.ClassSuccessResponse)
	_ = proto.Lifetime(lifetime).AddTo(r.resp)
	r.send(id.Key)
	return nil
}

// checkPeer applies RFC 8656 §9.1/§12.1 family matching and the peer policy.
func (r *request) checkPeer(a *allocations.Allocation, peer netip.AddrPort) error {
	if peer.Addr().Is4() != a.Relayed.Addr().Is4() {
		return newError(stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch")
	}
	if !r.s.policy().Allowed(peer.Addr()) {
		r.s.log.Info("peer denied by policy", "user", a.Username, "peer", peer.Addr().String())
		return newError(stun.CodeForbidden, "Forbidden: relaying to this peer address is not allowed")
	}
	return nil
}

// createPermission implements RFC 8656 §9.2: every XOR-PEER-ADDRESS must be
// acceptable, or none is installed.
func (r *request) createPermission(id auth.Identity) error {
	a, err := r.owned(id)
	if err != nil {
		return err
	}
	var peers []netip.Addr
	var bad error
	_ = r.req.ForEach(stun.AttrXORPeerAddress, func(m *stun.Message) error {
		peer, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
		if err != nil {
			bad = newError(stun.CodeBadRequest, "Bad Request: malformed XOR-PEER-ADDRESS")
			return bad
		}
		if err := r.checkPeer(a, peer); err != nil {
			bad = err
			return err
		}
		peers = append(peers, peer.Addr())
		return nil
	})
	if bad != nil {
		return bad
	}
	if len(peers) == 0 {
		return newError(stun.CodeBadRequest, "Bad Request: missing XOR-PEER-ADDRESS")
	}
	now := time.Now()
	for _, p := range peers {
		if err := a.Permit(p, now); err != nil {
			return err
		}
	}
	r.start(stun.ClassSuccessResponse)
	r.send(id.Key)
	return nil
}

// channelBind implements RFC 8656 §12.2.
func (r *request) channelBind(id auth.Identity) error {
	a, err := r.owned(id)
	if err != nil {
		return err
	}
	var number proto.ChannelNumber
	if err := number.GetFrom(r.req); err != nil || !number.Valid() {
		return newError(stun.CodeBadRequest, "Bad Request: missing CHANNEL-NUMBER or outside 0x4000-0x4FFF")
	}
	peer, err := proto.GetXORAddress(r.req, stun.AttrXORPeerAddress)
	if err != nil {
		return newError(stun.CodeBadRequest, "Bad Request: missing or malformed XOR-PEER-ADDRESS")
	}
	if err := r.checkPeer(a, peer); err != nil {
		return err
	}
	if err := a.BindChannel(uint16(number), peer, time.Now()); err != nil {
		return err
	}
	r.start(stun.ClassSuccessResponse)
	r.send(id.Key)
	return nil
}

// knownAttributes are the comprehension-required attributes (type < 0x8000)
// a TURN request may carry that we understand or knowingly ignore.
var knownAttributes = [...]stun.AttrType{
	stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrErrorCode, stun.AttrRealm, stun.AttrNonce,
	stun.AttrChannelNumber, stun.AttrLifetime, stun.AttrXORPeerAddress, stun.AttrData,
	stun.AttrXORRelayedAddress, stun.AttrRequestedAddressFamily, stun.AttrEvenPort,
	stun.AttrRequestedTransport, stun.AttrDontFragment, stun.AttrReservationToken,
	stun.AttrXORMappedAddress, stun.AttrMessageIntegritySHA256, stun.AttrPasswordAlgorithm,
	stun.AttrUserhash, stun.AttrPriority, stun.AttrUseCandidate,
}

// unknownRequired lists the comprehension-required attributes of m we do
// not understand (RFC 8489 §14: types 0x0000-0x7FFF).
func unknownRequired(m *stun.Message) []stun.AttrType {
	var unknown []stun.AttrType
outer:
	for _, a := range m.Attributes {
		if a.Type >= 0x8000 {
			continue
		}
		for _, k := range knownAttributes {
			if a.Type == k {
				continue outer
			}
		}
		unknown = append(unknown, a.Type)
	}
	return unknown
}
