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

	// KeySize is the size of a stored long-term key (Config.Keys): an MD5
	// digest (RFC 8489 §9.2.2). SHA-256 keys (§18.5.1.2) are 32 bytes.
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
	// MD5(user:realm:password), 16 bytes (coturn's "0x..." form). Such a
	// user can use MD5 only, never SHA-256, and its presence makes the
	// server offer MD5 first (see algorithmsMD5First).
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
	// Username names the user: the USERNAME as sent, or, for a static user
	// found by USERHASH or by the OpaqueString form of its name, the name
	// as configured, so that one user's allocations have one owner.
	Username string
	// User is the quota key: the USER part of a REST username
	// ("EXPIRY:USER" or "USER:EXPIRY"), the whole username otherwise.
	User string
	// Key is the long-term key that verified the request, for checking the
	// client's later requests and for signing responses. It is a copy.
	Key []byte
	// Algorithm is the password algorithm Key was derived with: the
	// request's PASSWORD-ALGORITHM, MD5 when it had none.
	Algorithm PasswordAlgorithm
	// Integrity is the set of message-integrity attributes the responses
	// to this request carry (see Verify).
	Integrity Integrity
}

// Authenticator verifies long-term credentials and issues nonces. It is
// immutable after New and safe for concurrent use.
type Authenticator struct {
	realm string
	// realms are the spellings of realm a key may have been derived with:
	// as configured and, when it differs, OpaqueString(realm) (RFC 8489
	// §9.2.2).
	realms []string
	// static maps a username a client may send for a static user (its
	// configured name and, when it differs, its OpaqueString form) to that
	// user's candidate keys.
	static map[string]*staticUser
	// userhash maps the USERHASH values of the static users (RFC 8489
	// §14.4) to their entries in static.
	userhash map[[UserhashSize]byte]*staticUser
	// cookie and params are the nonce cookie and the PASSWORD-ALGORITHMS
	// choice of the nonces this Authenticator issues (see nonce.go).
	cookie   string
	params   byte
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
		realm:    cfg.Realm,
		realms:   forms(cfg.Realm),
		static:   make(map[string]*staticUser, len(cfg.Users)+len(cfg.Keys)),
		userhash: make(map[[UserhashSize]byte]*staticUser, len(cfg.Users)+len(cfg.Keys)),
		now:      cfg.Now,
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
		// A client may send the name as configured or OpaqueString'ed
		// (RFC 8489 §14.3); the key uses the name as sent (§9.2.2).
		for _, login := range forms(user) {
			a.addPassword(user, login, pass)
		}
	}
	for user, key := range cfg.Keys {
		if user == "" {
			return nil, errors.New("auth: static key for an empty user name")
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("auth: key for user %q is %d bytes, want %d (MD5 of user:realm:password)",
				user, len(key), KeySize)
		}
		// A stored key is bound to the name it was derived with, and it is
		// an MD5 key: such a user has no SHA-256 key (RFC 8489 §18.5.1.2
		// hashes the password itself).
		u := a.user(user, user)
		u.md5 = append(u.md5, append([]byte(nil), key...))
	}
	// Offer SHA-256 first unless a stored MD5 key would then fail: see
	// algorithmsMD5First.
	a.params = paramsSHA256First
	if len(cfg.Keys) > 0 {
		a.params = paramsMD5First
	}
	// Username anonymity (RFC 8489 §9.2.5: with the bit set "the USERHASH
	// attribute MUST be used") only when USERHASH can find every user: a
	// TURN REST API username cannot be recovered from its hash, since the
	// server learns it only from the request.
	a.cookie = cookiePasswordAlgorithms
	if len(cfg.Secrets) == 0 && len(a.static) > 0 {
		a.cookie = cookieAnonymity
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

// staticUser is one spelling of a static user's name and its candidate
// keys for each password algorithm.
type staticUser struct {
	name   string // as configured: Identity.Username and User
	md5    [][]byte
	sha256 [][]byte
}

// keys returns u's candidate keys for alg.
func (u *staticUser) keys(alg PasswordAlgorithm) [][]byte {
	if alg == AlgorithmSHA256 {
		return u.sha256
	}
	return u.md5
}

// user returns the entry for login (a spelling of the configured name
// user), making it and its USERHASH entries if needed.
func (a *Authenticator) user(name, login string) *staticUser {
	u := a.static[login]
	if u == nil {
		u = &staticUser{name: name}
		a.static[login] = u
		for _, realm := range a.realms {
			h := Userhash(login, realm)
			if _, taken := a.userhash[h]; !taken {
				a.userhash[h] = u
			}
		}
	}
	return u
}

// addPassword derives the keys of a static user with a password for one
// spelling login of its name. RFC 8489 §9.2.2 derives the key from
// OpaqueString(realm) and OpaqueString(password); browsers, pion and coturn
// hash them byte for byte. Both are candidates (they coincide for printable
// ASCII), so neither kind of client is locked out.
func (a *Authenticator) addPassword(name, login, pass string) {
	u := a.user(name, login)
	for _, realm := range a.realms {
		for _, p := range forms(pass) {
			u.md5 = appendKey(u.md5, Key(AlgorithmMD5, login, realm, p))
			u.sha256 = appendKey(u.sha256, Key(AlgorithmSHA256, login, realm, p))
		}
	}
}

// appendKey appends key to keys unless it is there already.
func appendKey(keys [][]byte, key []byte) [][]byte {
	for _, k := range keys {
		if string(k) == string(key) {
			return keys
		}
	}
	return append(keys, key)
}

// LongTermKey returns the long-term credential key of RFC 8489 §9.2.2,
// "key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))",
// with the strings used as given, as browsers and coturn compute it (see the
// package comment on OpaqueString). Key computes it for either algorithm.
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
// (RFC 8489 §9.2.4). It finds the user by USERNAME, or by USERHASH (static
// users only), collects the candidate keys for the request's password
// algorithm and accepts the request if its integrity attribute matches any
// of them:
//
//   - a static user (Config.Users or Config.Keys) is checked against its own
//     keys only: a static user wins over REST parsing;
//   - otherwise, when secrets are configured, a TURN REST API username
//     (see MintREST) is checked against the key derived from every secret, in
//     order, after its expiry: password = base64(HMAC-SHA1(secret, username)),
//     key = MD5 or SHA-256 of username ":" realm ":" password.
//
// The password algorithm is the request's PASSWORD-ALGORITHM (MD5 or
// SHA-256), MD5 without one (§9.2.2). §9.2.4: "If the
// MESSAGE-INTEGRITY-SHA256 attribute is present, compute the value for the
// message integrity as described in Section 14.6 [...]. Otherwise, using the
// same password, compute the value for the MESSAGE-INTEGRITY attribute".
// A user with only a stored MD5 key has no SHA-256 key.
//
// Identity.Integrity says what the responses carry: §9.2.4 "Any response
// generated by the server MUST include the MESSAGE-INTEGRITY-SHA256
// attribute [...] unless the request was processed as though
// PASSWORD-ALGORITHM was MD5 (because the request contained neither
// PASSWORD-ALGORITHMS nor PASSWORD-ALGORITHM). In that case, the
// MESSAGE-INTEGRITY attribute MUST be used". So: MESSAGE-INTEGRITY-SHA256
// when the request named an algorithm, and MESSAGE-INTEGRITY otherwise; in
// addition each integrity attribute the request itself carried, so that a
// client that checks the kind it sent (a legacy request with
// MESSAGE-INTEGRITY-SHA256 only) finds it.
//
// The caller has already answered 401 to a request without
// MESSAGE-INTEGRITY(-SHA256), 400 to one without USERNAME or USERHASH,
// REALM or NONCE, 400 to one failing CheckPasswordAlgorithms, and 438 to a
// stale nonce (CheckNonce). Verify temporarily rewrites m's length field
// (pion's MessageIntegrity.Check does), so m must not be read concurrently.
func (a *Authenticator) Verify(m *stun.Message) (Identity, error) {
	sha256MI := m.Contains(stun.AttrMessageIntegritySHA256)
	sha1MI := m.Contains(stun.AttrMessageIntegrity)
	alg := AlgorithmMD5
	var integrity Integrity
	if raw, err := m.Get(stun.AttrPasswordAlgorithm); err == nil {
		e, ok := parseOnePasswordAlgorithm(raw)
		if !ok || len(e.params) != 0 || (e.alg != AlgorithmMD5 && e.alg != AlgorithmSHA256) {
			return Identity{}, fmt.Errorf("%w: unsupported PASSWORD-ALGORITHM %x", ErrPasswordAlgorithm, raw)
		}
		alg, integrity = e.alg, IntegritySHA256
	} else if !sha256MI {
		integrity = IntegritySHA1
	}
	if sha1MI {
		integrity |= IntegritySHA1
	}
	if sha256MI {
		integrity |= IntegritySHA256
	}
	check := func(key []byte) bool {
		if sha256MI {
			return MessageIntegritySHA256(key).Check(m) == nil
		}
		return stun.MessageIntegrity(key).Check(m) == nil
	}

	username, static, err := a.lookup(m)
	if err != nil {
		return Identity{}, err
	}
	if !sha1MI && !sha256MI {
		return Identity{}, fmt.Errorf("%w for user %q: no MESSAGE-INTEGRITY", ErrBadIntegrity, username)
	}
	// A REALM other than ours cannot verify (the realm is part of the key);
	// saying so explicitly makes the log useful.
	if realm, err := m.Get(stun.AttrRealm); err == nil && string(realm) != a.realm {
		return Identity{}, fmt.Errorf("%w for user %q: realm %q, want %q", ErrBadIntegrity, username, realm, a.realm)
	}

	if static != nil {
		keys := static.keys(alg)
		for _, key := range keys {
			if check(key) {
				return Identity{Username: static.name, User: static.name, Key: append([]byte(nil), key...),
					Algorithm: alg, Integrity: integrity}, nil
			}
		}
		if len(keys) == 0 {
			return Identity{}, fmt.Errorf("%w for user %q: only a stored MD5 key, no %v key", ErrBadIntegrity, username, alg)
		}
		return Identity{}, fmt.Errorf("%w for user %q (%v)", ErrBadIntegrity, username, alg)
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
		// The password is base64, printable ASCII: OpaqueString leaves it.
		pass := restPassword(secret, username)
		for _, realm := range a.realms {
			key := Key(alg, username, realm, pass)
			if check(key) {
				return Identity{Username: username, User: cred.user, Key: key, Algorithm: alg, Integrity: integrity}, nil
			}
		}
	}
	return Identity{}, fmt.Errorf("%w for user %q: no configured secret matches", ErrBadIntegrity, username)
}

// lookup finds the user of a request: by USERNAME, which may name a static
// user or be a REST username (static is nil then), or by USERHASH, which
// finds static users only (RFC 8489 §14.4; a REST username cannot be
// recovered from its hash). Errors wrap ErrNoUsername or ErrUnknownUser.
func (a *Authenticator) lookup(m *stun.Message) (username string, static *staticUser, err error) {
	if raw, err := m.Get(stun.AttrUsername); err == nil {
		if len(raw) == 0 {
			return "", nil, ErrNoUsername
		}
		if len(raw) > maxUsername {
			return "", nil, fmt.Errorf("%w: USERNAME is %d bytes, limit %d", ErrNoUsername, len(raw), maxUsername)
		}
		return string(raw), a.static[string(raw)], nil
	}
	raw, err := m.Get(stun.AttrUserhash)
	if err != nil {
		return "", nil, ErrNoUsername
	}
	if len(raw) != UserhashSize {
		return "", nil, fmt.Errorf("%w: USERHASH of %d bytes, want %d", ErrUnknownUser, len(raw), UserhashSize)
	}
	u := a.userhash[[UserhashSize]byte(raw)]
	if u == nil {
		return "", nil, fmt.Errorf("%w: USERHASH %x matches no static user (TURN REST API credentials must be sent as USERNAME)",
			ErrUnknownUser, raw)
	}
	return u.name, u, nil
}
