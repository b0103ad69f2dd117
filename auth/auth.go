package auth

import (
	"crypto/md5" //nolint:gosec // RFC 8489 §9.2.2 mandates MD5 for the long-term key.
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pion/stun/v4"
)

// Sentinel errors. Verify and CheckNonce wrap them with the username or the
// reason, so compare with errors.Is. The server maps them to STUN error
// codes: ErrNoUsername → 400, ErrUnknownUser, ErrExpired and ErrBadIntegrity
// → 401, ErrStaleNonce → 438 (RFC 8489 §9.2.4).
var (
	// ErrNoUsername means the request has no (or an empty or oversized)
	// USERNAME attribute.
	ErrNoUsername = errors.New("auth: no USERNAME")

	// ErrUnknownUser means the username is neither a static user nor, when
	// REST secrets are configured, a TURN REST API username.
	ErrUnknownUser = errors.New("auth: unknown user")

	// ErrExpired means a TURN REST API username's expiry time has passed.
	ErrExpired = errors.New("auth: credential expired")

	// ErrBadIntegrity means MESSAGE-INTEGRITY is missing or matches none of
	// the user's candidate keys (wrong password, removed secret, other realm).
	ErrBadIntegrity = errors.New("auth: MESSAGE-INTEGRITY check failed")

	// ErrStaleNonce means a nonce is too old, from the future, malformed,
	// forged, or was issued to another client IP address.
	ErrStaleNonce = errors.New("auth: stale nonce")
)

const (
	// DefaultNonceLifetime is used when Config.NonceLifetime is zero. RFC 8656
	// §5 asks that nonces expire at least once an hour during an allocation.
	DefaultNonceLifetime = 10 * time.Minute

	// KeySize is the size of a long-term key: an MD5 digest (RFC 8489 §9.2.2).
	KeySize = md5.Size

	// minNonceKey is the shortest NonceKey New accepts, in bytes.
	minNonceKey = 16
	// nonceKeySize is the size of a NonceKey drawn by New.
	nonceKeySize = 32
	// maxUsername is the largest USERNAME accepted, in bytes: RFC 8489 §14.3
	// says "fewer than 509 bytes"; pion/stun encodes up to 513.
	maxUsername = 513
	// maxRealmChars bounds Config.Realm: RFC 8489 §14.9 "fewer than 128
	// characters".
	maxRealmChars = 127
)

// Config configures an Authenticator. The zero values of NonceLifetime,
// NonceKey and Now select defaults; Realm is required.
type Config struct {
	// Realm is sent in REALM and is part of every long-term key.
	Realm string
	// Users maps a static username to its password.
	Users map[string]string
	// Keys maps a static username to its long-term key
	// MD5(user:realm:password), 16 bytes (coturn's "0x..." form).
	Keys map[string][]byte
	// Secrets are the TURN REST API shared secrets. MintREST should use the
	// first; Verify accepts any, so a new secret can be put first while the
	// old one is still being honoured.
	Secrets []string
	// NonceLifetime is how long a nonce stays valid; DefaultNonceLifetime if
	// 0. Nonces carry whole seconds, so a nonce lives up to a second longer.
	NonceLifetime time.Duration
	// NonceKey is the HMAC key for nonces, at least 16 bytes; random if nil.
	// Servers that share it accept each other's nonces.
	NonceKey []byte
	// Now returns the current time; time.Now if nil. Tests control it.
	Now func() time.Time
}

// Identity is the result of a successful Verify.
type Identity struct {
	// Username is the USERNAME as sent.
	Username string
	// User is the quota key: the USER part of a REST username
	// ("EXPIRY:USER" or "USER:EXPIRY"), the whole username otherwise.
	User string
	// Key is the long-term key that verified the request, for checking the
	// client's later requests and for signing responses. It is a copy.
	Key []byte
}

// Authenticator verifies long-term credentials and issues nonces. It is
// immutable after New and safe for concurrent use.
type Authenticator struct {
	realm string
	// static maps a static username to its candidate keys: the key derived
	// from Config.Users and/or the one from Config.Keys.
	static   map[string][][]byte
	secrets  [][]byte
	nonceKey []byte
	lifetime int64 // nonce lifetime in seconds
	now      func() time.Time
	// scratch pools *nonceScratch values so that nonces cost no allocation.
	scratch sync.Pool
}

// New validates cfg and returns an Authenticator. It derives the static
// users' keys once, copies every map and slice it keeps, and draws a random
// NonceKey when none is given.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Realm == "" {
		return nil, errors.New("auth: empty realm; set a realm such as your domain name")
	}
	if !utf8.ValidString(cfg.Realm) || utf8.RuneCountInString(cfg.Realm) > maxRealmChars {
		return nil, fmt.Errorf("auth: realm %q: want valid UTF-8 of at most %d characters (RFC 8489 §14.9)",
			cfg.Realm, maxRealmChars)
	}
	a := &Authenticator{
		realm:  cfg.Realm,
		static: make(map[string][][]byte, len(cfg.Users)+len(cfg.Keys)),
		now:    cfg.Now,
	}
	if a.now == nil {
		a.now = time.Now
	}
	for user, pass := range cfg.Users {
		if user == "" {
			return nil, errors.New("auth: static user with an empty name")
		}
		if pass == "" {
			return nil, fmt.Errorf("auth: static user %q has an empty password", user)
		}
		a.static[user] = append(a.static[user], LongTermKey(user, cfg.Realm, pass))
	}
	for user, key := range cfg.Keys {
		if user == "" {
			return nil, errors.New("auth: static key for an empty user name")
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("auth: key for user %q is %d bytes, want %d (MD5 of user:realm:password)",
				user, len(key), KeySize)
		}
		a.static[user] = append(a.static[user], append([]byte(nil), key...))
	}
	for i, s := range cfg.Secrets {
		if s == "" {
			return nil, fmt.Errorf("auth: REST secret #%d is empty", i+1)
		}
		a.secrets = append(a.secrets, []byte(s))
	}

	switch lt := cfg.NonceLifetime; {
	case lt == 0:
		a.lifetime = int64(DefaultNonceLifetime / time.Second)
	case lt < time.Second:
		return nil, fmt.Errorf("auth: nonce lifetime %v: want at least 1s", lt)
	default:
		a.lifetime = int64(lt / time.Second)
	}

	switch {
	case len(cfg.NonceKey) == 0:
		a.nonceKey = make([]byte, nonceKeySize)
		if _, err := rand.Read(a.nonceKey); err != nil {
			return nil, fmt.Errorf("auth: drawing a nonce key: %w", err)
		}
	case len(cfg.NonceKey) < minNonceKey:
		return nil, fmt.Errorf("auth: nonce key is %d bytes, want at least %d", len(cfg.NonceKey), minNonceKey)
	default:
		a.nonceKey = append([]byte(nil), cfg.NonceKey...)
	}
	a.scratch.New = a.newScratch
	return a, nil
}

// Realm returns the configured realm, for REALM attributes.
func (a *Authenticator) Realm() string { return a.realm }

// LongTermKey returns the long-term credential key of RFC 8489 §9.2.2,
// "key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))",
// with the strings used as given (see the package comment on OpaqueString).
func LongTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // mandated by RFC 8489 §9.2.2
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	return h.Sum(make([]byte, 0, KeySize))
}

// Verify authenticates a request with the long-term credential mechanism
// (RFC 8489 §9.2.4). It reads USERNAME, collects the candidate keys and
// accepts the request if its MESSAGE-INTEGRITY matches any of them:
//
//   - a static user (Config.Users or Config.Keys) is checked against its own
//     keys only: a static user wins over REST parsing;
//   - otherwise, when secrets are configured, a TURN REST API username
//     (see MintREST) is checked against the key derived from every secret, in
//     order, after its expiry: password = base64(HMAC-SHA1(secret, username)),
//     key = MD5(username ":" realm ":" password).
//
// The caller has already answered 401 to a request without
// MESSAGE-INTEGRITY, 400 to one without USERNAME, REALM or NONCE, and 438 to
// a stale nonce (CheckNonce), in that order as RFC 8489 §9.2.4 lists them.
// Verify temporarily rewrites m's length field (pion's MessageIntegrity.Check
// does), so m must not be read concurrently.
func (a *Authenticator) Verify(m *stun.Message) (Identity, error) {
	raw, err := m.Get(stun.AttrUsername)
	if err != nil || len(raw) == 0 {
		return Identity{}, ErrNoUsername
	}
	if len(raw) > maxUsername {
		return Identity{}, fmt.Errorf("%w: USERNAME is %d bytes, limit %d", ErrNoUsername, len(raw), maxUsername)
	}
	username := string(raw)
	if !m.Contains(stun.AttrMessageIntegrity) {
		return Identity{}, fmt.Errorf("%w for user %q: no MESSAGE-INTEGRITY", ErrBadIntegrity, username)
	}
	// A REALM other than ours cannot verify (the realm is part of the key);
	// saying so explicitly makes the log useful.
	if realm, err := m.Get(stun.AttrRealm); err == nil && string(realm) != a.realm {
		return Identity{}, fmt.Errorf("%w for user %q: realm %q, want %q", ErrBadIntegrity, username, realm, a.realm)
	}

	if keys, ok := a.static[username]; ok {
		for _, key := range keys {
			if stun.MessageIntegrity(key).Check(m) == nil {
				return Identity{Username: username, User: username, Key: append([]byte(nil), key...)}, nil
			}
		}
		return Identity{}, fmt.Errorf("%w for user %q", ErrBadIntegrity, username)
	}

	if len(a.secrets) == 0 {
		return Identity{}, fmt.Errorf("%w %q", ErrUnknownUser, username)
	}
	cred, ok := parseREST(username)
	if !ok {
		return Identity{}, fmt.Errorf("%w %q: not a static user nor a REST username (EXPIRY:USER)",
			ErrUnknownUser, username)
	}
	// TURN REST API (draft-uberti-behave-turn-rest-00 §2.2): the username
	// carries the expiry; coturn accepts it while expiry >= now.
	if now := a.now().Unix(); cred.expiry < now {
		return Identity{}, fmt.Errorf("%w for user %q: expired %v ago", ErrExpired, username,
			time.Duration(now-cred.expiry)*time.Second)
	}
	for _, secret := range a.secrets {
		key := LongTermKey(username, a.realm, restPassword(secret, username))
		if stun.MessageIntegrity(key).Check(m) == nil {
			return Identity{Username: username, User: cred.user, Key: key}, nil
		}
	}
	return Identity{}, fmt.Errorf("%w for user %q: no configured secret matches", ErrBadIntegrity, username)
}
