package relay

import (
	"github.com/pion/stun/v4"

	"github.com/postern/postern/auth"
)

// RFC 8489 security features in the request path: which integrity
// attributes a request carries and a response gets, and the bid-down check
// of the password-algorithm negotiation. The logic is in package auth.

// hasIntegrity reports whether m carries MESSAGE-INTEGRITY or
// MESSAGE-INTEGRITY-SHA256: RFC 8489 §9.2.4 challenges a request with
// neither with 401.
func hasIntegrity(m *stun.Message) bool {
	return m.Contains(stun.AttrMessageIntegrity) || m.Contains(stun.AttrMessageIntegritySHA256)
}

// hasUser reports whether m names its user: RFC 8489 §9.2.4 answers 400 to
// a request with integrity "but is missing either the USERNAME or USERHASH,
// REALM, or NONCE attribute".
func hasUser(m *stun.Message) bool {
	return m.Contains(stun.AttrUsername) || m.Contains(stun.AttrUserhash)
}

// addIntegrity signs an authenticated answer with the attributes of which
// (auth.Identity.Integrity): MESSAGE-INTEGRITY first, as only
// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow it (RFC 8489 §14.5).
// Zero means MESSAGE-INTEGRITY.
func addIntegrity(m *stun.Message, key []byte, which auth.Integrity) {
	if which == 0 || which&auth.IntegritySHA1 != 0 {
		_ = stun.MessageIntegrity(key).AddTo(m)
	}
	if which&auth.IntegritySHA256 != 0 {
		_ = auth.MessageIntegritySHA256(key).AddTo(m)
	}
}

// checkPasswordAlgorithms applies RFC 8489 §9.2.4's bid-down check (see
// auth.CheckPasswordAlgorithms) and answers 400 when it fails. It is logged:
// a mismatch is either a broken client or a man in the middle.
func (r *request) checkPasswordAlgorithms(nonce string) bool {
	err := r.s.auth().CheckPasswordAlgorithms(r.req, nonce, r.ft.Client.Addr())
	if err == nil {
		return true
	}
	r.s.log.Info("password algorithm negotiation failed", "client", r.ft.Client.String(),
		"transport", r.ft.Transport.String(), "err", err)
	r.fail(newError(stun.CodeBadRequest, "Bad Request: PASSWORD-ALGORITHM(S) do not match the offer"), nil)
	return false
}
