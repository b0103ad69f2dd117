package relay

import "github.com/pion/stun/v4"

// fingerprintOK reports whether m carries no FINGERPRINT or a correct one
// as its last attribute. RFC 8489 §7.3: "If the FINGERPRINT extension is
// being used, the agent checks that the FINGERPRINT attribute is present
// and contains the correct value. If any errors are detected, the message
// is silently discarded. In the case when STUN is being multiplexed with
// another protocol, an error may indicate that this is not really a STUN
// message". §14.7: "When present, the FINGERPRINT attribute MUST be the
// last attribute in the message", so a FINGERPRINT elsewhere fails the
// check too (its CRC is computed over everything before the last
// attribute).
func fingerprintOK(m *stun.Message) bool {
	if !m.Contains(stun.AttrFingerprint) {
		return true
	}
	if n := len(m.Attributes); n == 0 || m.Attributes[n-1].Type != stun.AttrFingerprint {
		return false
	}
	return stun.Fingerprint.Check(m) == nil
}
