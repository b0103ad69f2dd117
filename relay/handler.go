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
func (s *Server) handleRequest(req, resp *stun.Message, ft allocations.FiveTuple, sink allocations.ClientSink, relayIP relayIPs) {
	if req.Type.Class != stun.ClassRequest {
		return // responses and unknown indications are not ours to answer
	}
	if !fingerprintOK(req) { // RFC 8489 §7.3: silently discarded (fingerprint.go)
		s.stats.drop(DropMalformed)
		return
	}
	s.stats.request(req.Type.Method)
	r := request{s: s, req: req, resp: resp, ft: ft, sink: sink, relayIP: relayIP}
	if req.Type.Method == stun.MethodBinding {
		r.binding()
		return
	}
	switch req.Type.Method {
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind,
		stun.MethodConnect, stun.MethodConnectionBind: // RFC 6062 (tcprelay.go)
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
	if len(req.Raw) < minChallengedRequest && !req.Contains(stun.AttrMessageIntegrity) && !req.Contains(stun.AttrMessageIntegritySHA256) {
		// Too short to be a request a client means: answering it with a
		// challenge would let the smallest spoofed datagram earn the
		// largest unauthenticated answer (see minChallengedRequest).
		r.fail(newError(stun.CodeBadRequest, "Bad Request: too short"), nil)
		return
	}
	id, ok := r.authenticate()
	if !ok {
		return
	}
	r.integrity = id.Integrity
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
	case stun.MethodConnect:
		err = r.connect(id)
	case stun.MethodConnectionBind:
		err = r.connectionBind(id)
	}
	if err != nil {
		var extra []stun.Setter
		if se, ok := err.(*stunError); ok {
			extra = se.extra
		}
		r.fail(err, id.Key, extra...)
	}
}

// minChallengedRequest is the size of the smallest request without
// MESSAGE-INTEGRITY that gets a 401 challenge: an Allocate with
// REQUESTED-TRANSPORT (RFC 8656 §7.2 requires it), 28 bytes. The other
// methods are sent with MESSAGE-INTEGRITY, and shorter requests get a 400.
// The 401 carries REALM, NONCE and PASSWORD-ALGORITHMS (RFC 8489 §9.2.4),
// 128 bytes with a 12-character realm: challenging only requests of 28
// bytes or more keeps the amplification of a spoofed request under 5x
// (relay/abuse_test.go TestAmplificationFactor).
const minChallengedRequest = 20 + 8 // STUN header and REQUESTED-TRANSPORT

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
	relayIP   relayIPs // of the listener the request came in on
	// integrity is what send signs authenticated answers with (see
	// auth.Verify); zero means MESSAGE-INTEGRITY.
	integrity auth.Integrity
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
		addIntegrity(r.resp, key, r.integrity)
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

// challenge answers 401 or 438 with a fresh NONCE, the REALM and the
// PASSWORD-ALGORITHMS offered with the nonce, so the client can (re)compute
// its credentials (RFC 8489 §9.2.4).
func (r *request) challenge(code stun.ErrorCode, reason string) {
	a := r.s.auth()
	r.fail(newError(code, reason), nil,
		stun.NewRealm(a.Realm()),
		stun.NewNonce(a.Nonce(r.ft.Client.Addr())),
		a.PasswordAlgorithms())
}

// authenticate applies the long-term credential mechanism (RFC 8489 §9.2.4)
// and answers the client itself when it fails.
func (r *request) authenticate() (auth.Identity, bool) {
	if !hasIntegrity(r.req) {
		r.challenge(stun.CodeUnauthorized, "Unauthorized")
		return auth.Identity{}, false
	}
	var nonce stun.Nonce
	if !hasUser(r.req) || !r.req.Contains(stun.AttrRealm) || nonce.GetFrom(r.req) != nil {
		r.fail(newError(stun.CodeBadRequest, "Bad Request: MESSAGE-INTEGRITY without USERNAME, REALM and NONCE"), nil)
		return auth.Identity{}, false
	}
	if !r.checkPasswordAlgorithms(nonce.String()) {
		return auth.Identity{}, false
	}
	if err := r.s.auth().CheckNonce(nonce.String(), r.ft.Client.Addr()); err != nil {
		r.staleNonce(err)
		return auth.Identity{}, false
	}
	id, err := r.s.auth().Verify(r.req)
	if err != nil {
		r.s.stats.authFailed(err)
		r.s.stats.rememberAuthFailure(time.Now(), r.ft, r.req, err)
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
			r.allocateSuccess(a, time.Until(a.Expires()), id.Key, nil, r.retransmittedAddressError(a))
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
		if alt := r.tryAlternate("this server is draining"); alt != nil {
			return alt // the fleet's best other node (fleet.go)
		}
		return newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: this server is draining")
	}
	var transport proto.RequestedTransport
	if err := transport.GetFrom(r.req); err != nil {
		return newError(stun.CodeBadRequest, "Bad Request: missing or malformed REQUESTED-TRANSPORT")
	}
	if transport == proto.ProtoTCP {
		return r.allocateTCP(id) // RFC 6062 (tcprelay.go)
	}
	if transport != proto.ProtoUDP {
		return newError(stun.CodeUnsupportedTransProto, "Unsupported Transport Protocol: UDP and TCP relaying are offered")
	}
	var evenPort proto.EvenPort
	hasEvenPort := evenPort.GetFrom(r.req) == nil
	var token proto.ReservationToken
	hasToken := token.GetFrom(r.req) == nil
	plan, err := r.planFamilies(hasToken, hasEvenPort && evenPort.ReservePort)
	if err != nil {
		return err
	}
	dontFragment := proto.HasDontFragment(r.req) // dontfrag.go
	if dontFragment && !dontFragmentSupported {
		return errUnknownDontFragment()
	}
	lifetime := r.lifetime()
	var (
		conn     *net.UDPConn
		reserved [8]byte // the token of the port reserved after ours, if any
	)
	switch {
	case hasToken:
		// RFC 8656 §7.2: the socket reserved under the token, or 508.
		if conn = r.s.reserved.take(token); conn == nil {
			return newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: unknown or expired reservation token")
		}
	case hasEvenPort && evenPort.ReservePort:
		conn, reserved, err = r.s.reserved.listenEvenPair(plan.primary, id.User, r.ft.Client.Addr())
	default:
		conn, err = r.s.listenRelay(plan.primary, hasEvenPort)
	}
	if err != nil {
		return err
	}
	out, err := newUDPOut(conn)
	if err != nil {
		r.s.ports.Close(conn)
		return err
	}
	if err := prepareRelaySocket(out, dontFragment); err != nil {
		r.s.ports.Close(conn)
		if c := r.s.reserved.take(reserved[:]); c != nil {
			r.s.reserved.release(c)
		}
		return err
	}
	var half6 *allocations.Half6
	if plan.second.IsValid() {
		if half6, err = r.bindHalf6(plan.second, hasEvenPort, dontFragment); err != nil {
			// RFC 8656 §7.2 step 9: a dual allocation granted one family
			// only is a success, with ADDRESS-ERROR-CODE for the other.
			r.s.log.Warn("dual allocation: no IPv6 relay socket", "client", r.ft.Client.String(), "err", err)
			plan.missing = proto.AddressErrorCode{Family: proto.FamilyIPv6, Code: stun.CodeInsufficientCapacity, Reason: "Insufficient Capacity"}
		}
	}
	a := &allocations.Allocation{
		FiveTuple:     r.ft,
		Username:      id.Username,
		User:          id.User,
		Key:           id.Key,
		Relayed:       r.advertised(conn),
		Conn:          conn,
		Raw:           out.raw,
		Half6:         half6,
		Sink:          r.sink,
		Created:       time.Now(),
		TransactionID: r.req.TransactionID,
	}
	a.DontFragment.Store(dontFragment)
	if err := r.create(a, lifetime); err != nil {
		r.s.ports.Close(conn)
		if half6 != nil {
			r.s.ports.Close(half6.Conn)
		}
		if c := r.s.reserved.take(reserved[:]); c != nil {
			r.s.reserved.release(c)
		}
		return err
	}
	r.s.stats.allocationCreated(r.ft)
	r.s.relays.Go(func() { r.s.relayFromPeers(a) })
	relayed := []any{"relayed", a.Relayed.String()}
	if half6 != nil {
		r.s.relays.Go(func() { r.s.relayFromSocket(a, half6.Conn) })
		relayed = append(relayed, "relayed6", half6.Relayed.String())
	}
	r.s.log.Info("allocation created", append([]any{"id", a.ID, "user", id.Username, "client", r.ft.Client.String(),
		"transport", r.ft.Transport.String(), "lifetime", lifetime}, relayed...)...)
	var tokenAttr []byte
	if reserved != ([8]byte{}) {
		tokenAttr = reserved[:]
	}
	r.allocateSuccess(a, lifetime, id.Key, tokenAttr, plan.missing)
	return nil
}

// familyPlan is which relayed addresses an Allocate gets (RFC 8656 §7.2
// steps 5 to 9).
type familyPlan struct {
	// primary is where the first relay socket binds; invalid with a
	// RESERVATION-TOKEN (the reserved socket is used as it is).
	primary netip.Addr
	// second is the IPv6 relay address of a dual allocation (primary is
	// then IPv4); invalid when there is none.
	second netip.Addr
	// missing, for an ADDITIONAL-ADDRESS-FAMILY request granted one
	// family only, names the other and why (Code 0: nothing missing).
	missing proto.AddressErrorCode
}

// planFamilies applies RFC 8656 §7.2 steps 5 to 9 to the address family
// attributes; reservePort is EVEN-PORT with the R bit.
func (r *request) planFamilies(hasToken, reservePort bool) (familyPlan, error) {
	var requested proto.RequestedAddressFamily
	hasRequested := r.req.Contains(stun.AttrRequestedAddressFamily)
	if hasRequested && requested.GetFrom(r.req) != nil {
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: malformed REQUESTED-ADDRESS-FAMILY")
	}
	var additional proto.AdditionalAddressFamily
	hasAdditional := r.req.Contains(proto.AttrAdditionalAddressFamily)
	if hasAdditional && additional.GetFrom(r.req) != nil {
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: malformed ADDITIONAL-ADDRESS-FAMILY")
	}
	switch {
	case hasToken && (r.req.Contains(stun.AttrEvenPort) || hasRequested || hasAdditional):
		// Step 5: "If yes, and the request also contains an EVEN-PORT or
		// REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY attribute,
		// the server rejects the request with a 400 (Bad Request) error."
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: RESERVATION-TOKEN with EVEN-PORT or an address family")
	case hasToken:
		return familyPlan{}, nil
	case hasRequested && hasAdditional:
		// Step 6: "The server checks if the request contains both
		// REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY
		// attributes. If yes, then the server rejects the request with a
		// 400 (Bad Request) error."
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY")
	case hasAdditional && reservePort:
		// Step 8: EVEN-PORT with the R bit "and the request also contains
		// an ADDITIONAL-ADDRESS-FAMILY attribute" → 400.
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: EVEN-PORT with R bit and ADDITIONAL-ADDRESS-FAMILY")
	case hasAdditional && proto.RequestedAddressFamily(additional) != proto.FamilyIPv6:
		// Step 9: "If yes, and the attribute value is 0x01 (IPv4 address
		// family), then the server rejects the request with a 400 (Bad
		// Request) error." (0x02 is "the only valid value", §18.10.)
		return familyPlan{}, newError(stun.CodeBadRequest, "Bad Request: ADDITIONAL-ADDRESS-FAMILY other than IPv6")
	case hasAdditional:
		return r.planDual()
	}
	family := requested
	if !hasRequested {
		family = r.defaultFamily()
	}
	// Step 7: a family the server does not support, or (absent the
	// attribute) no IPv4, "MUST generate an Allocate error response ...
	// with the 440 (Address Family not Supported) response code".
	var ip netip.Addr
	if family.Valid() {
		ip = r.relayIP.of(family == proto.FamilyIPv6)
	}
	if !ip.IsValid() {
		return familyPlan{}, newError(stun.CodeAddrFamilyNotSupported, "Address Family not Supported")
	}
	return familyPlan{primary: ip}, nil
}

// planDual plans a dual allocation (RFC 8656 §7.2 step 9): "If the server
// can partially meet the request, i.e., if it can only allocate one
// relayed transport address of a specific address type, then it includes
// ADDRESS-ERROR-CODE attribute in the success response".
func (r *request) planDual() (familyPlan, error) {
	notSupported := func(f proto.RequestedAddressFamily) proto.AddressErrorCode {
		return proto.AddressErrorCode{Family: f, Code: stun.CodeAddrFamilyNotSupported, Reason: "Address Family not Supported"}
	}
	v4, v6 := r.relayIP.v4, r.relayIP.v6
	switch {
	case v4.IsValid() && v6.IsValid():
		return familyPlan{primary: v4, second: v6}, nil
	case v4.IsValid():
		return familyPlan{primary: v4, missing: notSupported(proto.FamilyIPv6)}, nil
	case v6.IsValid():
		return familyPlan{primary: v6, missing: notSupported(proto.FamilyIPv4)}, nil
	}
	return familyPlan{}, newError(stun.CodeAddrFamilyNotSupported, "Address Family not Supported")
}

// defaultFamily is the family an Allocate without REQUESTED-ADDRESS-FAMILY
// gets (Config.DefaultFamily).
func (r *request) defaultFamily() proto.RequestedAddressFamily {
	switch r.s.cfg.DefaultFamily {
	case FamilyIPv6:
		return proto.FamilyIPv6
	case FamilyKeep:
		if ip := r.ft.Client.Addr(); !ip.Is4() && !ip.Is4In6() {
			return proto.FamilyIPv6
		}
	}
	return proto.FamilyIPv4
}

// retransmittedAddressError is the ADDRESS-ERROR-CODE of the success
// response that a retransmitted Allocate gets again: the allocation keeps
// no copy, so it is derived anew from the request and the allocation.
func (r *request) retransmittedAddressError(a *allocations.Allocation) proto.AddressErrorCode {
	if !r.req.Contains(proto.AttrAdditionalAddressFamily) || a.Dual() {
		return proto.AddressErrorCode{}
	}
	plan, err := r.planDual()
	if err != nil || plan.missing.Code != 0 {
		return plan.missing
	}
	// Both families were planned: the IPv6 socket could not be bound.
	return proto.AddressErrorCode{Family: proto.FamilyIPv6, Code: stun.CodeInsufficientCapacity, Reason: "Insufficient Capacity"}
}

// bindHalf6 binds the IPv6 relay socket of a dual allocation on ip from
// the port pool (with evenPort, on an even port: RFC 8656 §7.2 asks an
// even port of "a relayed transport address", so of each).
func (r *request) bindHalf6(ip netip.Addr, evenPort, dontFragment bool) (*allocations.Half6, error) {
	conn, err := r.s.listenRelay(ip, evenPort)
	if err != nil {
		return nil, err
	}
	out, err := newUDPOut(conn)
	if err == nil {
		err = prepareRelaySocket(out, dontFragment)
	}
	if err != nil {
		r.s.ports.Close(conn)
		return nil, err
	}
	return &allocations.Half6{Relayed: r.advertised(conn), Conn: conn, Raw: out.raw}, nil
}

// advertised is the relayed address of a relay socket as clients are
// told it: its own, or the configured or discovered external address.
func (r *request) advertised(conn *net.UDPConn) netip.AddrPort {
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	advertised := unmapAddrPort(local)
	if ext := r.s.cfg.ExternalIP.Public(advertised.Addr()); ext.IsValid() {
		advertised = netip.AddrPortFrom(ext, local.Port())
	}
	return advertised
}

// allocateSuccess answers an Allocate; token, when not nil, is the
// RESERVATION-TOKEN of the port reserved after this one, and missing, when
// its Code is set, the ADDRESS-ERROR-CODE of a dual allocation that got one
// family only.
func (r *request) allocateSuccess(a *allocations.Allocation, lifetime time.Duration, key, token []byte, missing proto.AddressErrorCode) {
	r.start(stun.ClassSuccessResponse)
	// RFC 8656 §7.2: "An XOR-RELAYED-ADDRESS attribute containing the
	// relayed transport address or two XOR-RELAYED-ADDRESS attributes
	// containing the relayed transport addresses."
	_ = proto.AddXORAddress(r.resp, stun.AttrXORRelayedAddress, a.Relayed)
	if a.Half6 != nil {
		_ = proto.AddXORAddress(r.resp, stun.AttrXORRelayedAddress, a.Half6.Relayed)
	}
	_ = proto.Lifetime(lifetime.Truncate(time.Second)).AddTo(r.resp)
	if token != nil {
		_ = proto.ReservationToken(token).AddTo(r.resp)
	}
	if missing.Code != 0 {
		_ = missing.AddTo(r.resp)
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

// refresh implements RFC 8656 §8.2; LIFETIME 0 deletes at once.
func (r *request) refresh(id auth.Identity) error {
	a, err := r.owned(id)
	if err != nil {
		return err
	}
	lifetime := r.lifetime()
	if r.req.Contains(stun.AttrRequestedAddressFamily) {
		// RFC 8656 §8.1: "When refreshing a dual allocation, the client
		// includes a REQUESTED-ADDRESS-FAMILY attribute indicating the
		// address family type that should be refreshed", and with
		// LIFETIME 0 deletes that family's relayed address only (its
		// permissions and channels go with it, the other family's stay).
		// §8.2: a family the allocation does not have gets 443.
		var family proto.RequestedAddressFamily
		if err := family.GetFrom(r.req); err != nil {
			return newError(stun.CodeBadRequest, "Bad Request: malformed REQUESTED-ADDRESS-FAMILY")
		}
		ip := netip.IPv4Unspecified()
		if family != proto.FamilyIPv4 {
			ip = netip.IPv6Unspecified()
		}
		if !family.Valid() || !a.HasFamily(ip) {
			return newError(stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch: the allocation has no relayed address of this family")
		}
		if lifetime == 0 {
			conn, _, _ := a.ConnFor(ip)
			r.s.usage.deleting(a, UsageRefreshed)
			r.s.table.DeleteFamily(a, ip)
			r.s.usage.forget(a) // only one half went, or someone else removed it
			if r.s.uring != nil {
				r.s.uring.forget(conn) // io_uring holds a closed socket open until told (uring_linux.go)
			}
		} else if !a.RefreshFamily(ip, lifetime) {
			return newError(stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch: the allocation has no relayed address of this family")
		}
	} else if lifetime == 0 {
		r.s.usage.deleting(a, UsageRefreshed)
		r.s.table.Delete(r.ft)
		r.s.usage.forget(a)
	} else {
		a.Refresh(lifetime)
	}
	r.s.kernelSync(a) // the allocation's expiry bounds its kernel bindings
	r.start(stun.ClassSuccessResponse)
	_ = proto.Lifetime(lifetime).AddTo(r.resp)
	r.send(id.Key)
	return nil
}

// checkPeer applies RFC 8656 §9.1/§12.1 family matching, the peer policy
// and the own-address rule (self.go).
func (r *request) checkPeer(a *allocations.Allocation, peer netip.AddrPort) error {
	// RFC 8656 §10.2 and §12.2: a peer address "of a family the allocation
	// has no relayed address for" (of either half of a dual allocation)
	// gets 443 (Peer Address Family Mismatch).
	if !a.HasFamily(peer.Addr()) {
		return newError(stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch")
	}
	if !r.s.policy().Allowed(peer.Addr()) {
		r.s.log.Info("peer denied by policy", "user", a.Username, "peer", peer.Addr().String())
		return newError(stun.CodeForbidden, "Forbidden: relaying to this peer address is not allowed")
	}
	if r.s.own.Load().denies(peer) { // self.go: own addresses, relay ports only
		r.s.log.Info("peer denied: the server's own address outside the relay ports", "user", a.Username, "peer", peer.String())
		return newError(stun.CodeForbidden, "Forbidden: relaying to this server's own address is allowed only to relay ports")
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
	r.s.kernelSync(a)
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
	if a.TCP != nil {
		// A TCP allocation relays on data connections (RFC 6062 §4.3), not channels.
		return newError(stun.CodeBadRequest, "Bad Request: ChannelBind on a TCP allocation")
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
	r.s.kernelSync(a)
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
	stun.AttrUserhash, stun.AttrPriority, stun.AttrUseCandidate, stun.AttrConnectionID,
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
