package auth

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST API password is HMAC-SHA1 by definition
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// TURN REST API credentials (draft-uberti-behave-turn-rest-00 §2.2, coturn's
// --use-auth-secret): the username carries an expiry time in unix seconds
// and the password is base64(HMAC-SHA1(secret, username)). The server needs
// no state per user, only the shared secrets.

// MintREST returns TURN REST API credentials for user, valid until
// now+ttl, signed with secret: username "EXPIRY:USER" ("EXPIRY" alone when
// user is empty) and password base64(HMAC-SHA1(secret, username)). The
// result equals pion/turn's GenerateLongTermTURNRESTCredentials (and
// GenerateLongTermCredentials for an empty user) at the same instant.
func MintREST(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, restPassword([]byte(secret), username)
}

// restPassword is the REST API password of username under secret.
func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// restCred is a parsed TURN REST API username.
type restCred struct {
	expiry int64  // unix seconds
	user   string // quota key
}

// parseREST parses a TURN REST API username. It accepts what coturn's
// get_rest_api_timestamp accepts, split at the first ':' (coturn's default
// --rest-api-separator), but strictly:
//
//   - "EXPIRY:USER" when the part before the colon is all digits (the form
//     MintREST and every REST API server produce); USER may contain colons;
//   - "USER:EXPIRY" when the part before is not all digits and the part
//     after is (coturn's alternative order);
//   - "EXPIRY" alone, all digits.
//
// EXPIRY is unix seconds, decimal digits only (no sign), fitting an int64.
// The quota key is USER, or the whole username when USER is empty or absent.
// Anything else is not a REST username.
func parseREST(username string) (restCred, bool) {
	left, right, found := strings.Cut(username, ":")
	if !found {
		exp, ok := parseExpiry(username)
		return restCred{expiry: exp, user: username}, ok
	}
	exp, ok := parseExpiry(left)
	user := right
	if !ok {
		if exp, ok = parseExpiry(right); !ok {
			return restCred{}, false
		}
		user = left
	}
	if user == "" {
		user = username
	}
	return restCred{expiry: exp, user: user}, true
}

// parseExpiry parses s, all decimal digits, as a non-negative int64.
func parseExpiry(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false // overflow
		}
		n = n*10 + d
	}
	return n, true
}
