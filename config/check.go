package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/postern/postern/auth"
)

// What `postern check-config` checks: the file as serve would read it,
// every problem at once, each with its line.

// CertExpiryWarning is how close to its expiry a certificate makes Check
// warn.
const CertExpiryWarning = 21 * 24 * time.Hour

// Report is the outcome of Check.
type Report struct {
	Problems []string // "FILE:LINE: message" or "FILE: message"
	Warnings []string
	Summary  string // of a valid file
}

// Check validates the file at path as serve would (with no flags).
func Check(path string) Report { return check(Settings(), path) }

// check is Check for the declarations decls (Settings and more, in tests).
func check(decls []Setting, path string) Report {
	var r Report
	data, err := os.ReadFile(path)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("%s: %v", path, err))
		return r
	}
	text := string(data)
	lines := KeyLines(text)
	at := func(line int, msg string) string {
		if line > 0 {
			return fmt.Sprintf("%s:%d: %s", path, line, msg)
		}
		return fmt.Sprintf("%s: %s", path, msg)
	}

	given, problems, err := read(decls, text)
	if err != nil {
		line, msg := tomlProblem(err)
		r.Problems = append(r.Problems, at(line, msg))
		return r
	}
	// Unknown keys and wrong types, each on its own line (a key of the
	// wrong type is left at its default); the rest is still checked.
	for _, p := range problems {
		r.Problems = append(r.Problems, at(KeyLine(lines, p.Key), p.Msg))
	}

	// Resolve stops at the first bad value: clear the key it names and
	// validate again, to report every independent problem at once. An
	// error naming a key already cleared is a consequence of the clearing
	// and ends the loop.
	var v Values
	cleared := map[string]bool{}
	for {
		if v, err = Resolve(decls, given); err == nil {
			break
		}
		msg := err.Error()
		key := leadingKey(decls, msg)
		if cleared[key] {
			break
		}
		r.Problems = append(r.Problems, at(messageLine(lines, msg), msg))
		if key == "" {
			break
		}
		delete(given, key)
		cleared[key] = true
	}
	get := func(key string) any { return Get(decls, given, key) }
	r.Warnings = append(r.Warnings, permissionWarnings(path, get)...)
	r.Warnings = append(r.Warnings, AllowPeerWarnings(get("relay.allow_peers").([]string))...)
	if cert, key := get("tls.cert").(string), get("tls.key").(string); cert != "" && key != "" {
		host, _ := ICEHost(get("ice_servers.host").(string))
		warns, err := checkCertificate(cert, key, host)
		if err != nil {
			r.Problems = append(r.Problems, at(KeyLine(lines, []string{"tls", "cert"}), err.Error()))
		}
		r.Warnings = append(r.Warnings, warns...)
	}
	if len(r.Problems) > 0 {
		return r
	}

	api := "off"
	if a := APIOf(v); a.Listen != "" {
		api = a.Listen
	}
	listeners, _ := Listeners(v)
	specs := make([]string, 0, len(listeners))
	for _, l := range listeners {
		specs = append(specs, l.String())
	}
	users, keys, _ := Users(v) // read by Resolve
	secrets := len(Secrets(v))
	r.Summary = fmt.Sprintf("listeners %s; realm %q; %d users, %d secrets; credentials API %s",
		strings.Join(specs, " "), Realm(v), len(users)+len(keys), secrets, api)
	if len(users)+len(keys)+secrets == 0 {
		r.Warnings = append(r.Warnings, "no users and no secrets: serve will generate a secret for each run, so no credential outlives a restart")
	}
	return r
}

// tomlProblem turns a decoding error into a line number and a message
// naming the key.
func tomlProblem(err error) (int, string) {
	if pe := (toml.ParseError{}); errors.As(err, &pe) {
		msg := pe.Message
		if pe.Position.Col > 0 {
			msg = fmt.Sprintf("column %d: %s", pe.Position.Col, msg)
		}
		if pe.LastKey != "" {
			msg = pe.LastKey + ": " + msg
		}
		return pe.Position.Line, msg
	}
	return 0, err.Error()
}

// leadingKey returns the declared key a Resolve error starts with
// ("relay.ports (--relay-ports) ..."), or "".
func leadingKey(decls []Setting, msg string) string {
	k := keyMention.FindString(msg)
	if k == "" || !strings.HasPrefix(msg, k) {
		return ""
	}
	if _, ok := find(decls, k); !ok {
		return ""
	}
	return k
}

// messageLine returns the line of the first key a Resolve error names
// that the file defines.
func messageLine(lines map[string]int, msg string) int {
	for _, m := range keyMention.FindAllString(msg, -1) {
		if l := lines[m]; l > 0 {
			return l
		}
	}
	return 0
}

// keyMention matches what may be a configuration key in a message.
var keyMention = regexp.MustCompile(`\b[a-z]+(?:_[a-z]+)*(?:\.[a-z]+(?:_[a-z]+)*)?\b`)

// permissionWarnings warns when a file holding secrets is readable by
// others.
func permissionWarnings(path string, get func(string) any) []string {
	if len(get("auth.secrets").([]string)) == 0 && len(get("auth.users").(map[string]string)) == 0 &&
		len(get("credentials_api.api_keys").([]string)) == 0 && get("admin.token").(string) == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return []string{fmt.Sprintf("mode %04o: the file holds secrets, passwords or API keys and others can read it: chmod 600 %s", fi.Mode().Perm(), path)}
}

// checkCertificate loads the TLS certificate as serve would and checks its
// dates, and that it names host (ice_servers.host) when one is given.
func checkCertificate(certPath, keyPath, host string) (warnings []string, err error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("tls.cert / tls.key: %v: give the PEM certificate chain and its private key (e.g. fullchain.pem and privkey.pem)", err)
	}
	leaf := pair.Leaf
	if leaf == nil && len(pair.Certificate) > 0 {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls.cert %s: %v", certPath, err)
		}
	}
	if leaf == nil {
		return nil, fmt.Errorf("tls.cert %s: no certificate in the file", certPath)
	}
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("tls.cert %s: expired on %s: renew it", certPath, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("tls.cert %s: not valid before %s: check the clock", certPath, leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.NotAfter.Sub(now) < CertExpiryWarning:
		warnings = append(warnings, fmt.Sprintf("tls.cert %s expires on %s: renew it soon", certPath, leaf.NotAfter.UTC().Format(time.DateOnly)))
	}
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			warnings = append(warnings, fmt.Sprintf("tls.cert %s does not cover ice_servers.host %s (%v): browsers will refuse turns: URLs", certPath, host, err))
		}
	}
	return warnings, nil
}

// embeddingPrefixes are the IPv6 forms that carry an IPv4 address which
// the packet ends up at. The peer policy matches IPv4 ranges against the
// address they carry, but an explicit IPv6 allow prefix wins over the
// default-deny IPv4 ranges (auth.PeerPolicy), so an allow_peers entry that
// overlaps one of these re-opens, through it, IPv4 ranges denied by
// default (loopback, private networks, cloud metadata).
var embeddingPrefixes = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("2002::/16"), "6to4 (2002::/16, RFC 3056)"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 (64:ff9b::/96, RFC 6052)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48, RFC 8215)"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (::/96, RFC 4291)"},
}

// AllowPeerWarnings warns about allow_peers entries that overlap an IPv6
// form embedding IPv4 addresses, e.g. ::/0 or 2000::/3. Entries that do
// not parse are left to Resolve.
func AllowPeerWarnings(values []string) []string {
	var out []string
	for _, v := range values {
		p, err := auth.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			continue // IPv4 (and IPv4-mapped) prefixes open only what they name
		}
		var forms []string
		for _, e := range embeddingPrefixes {
			if p.Overlaps(e.prefix) {
				forms = append(forms, e.what)
			}
		}
		if len(forms) > 0 {
			out = append(out, fmt.Sprintf("relay.allow_peers %s covers %s addresses, which carry IPv4 addresses: it re-opens, spelled that way, every IPv4 range denied by default (loopback, private networks, 169.254.169.254); allow only the IPv6 ranges you need, outside these", v, strings.Join(forms, ", ")))
		}
	}
	return out
}
