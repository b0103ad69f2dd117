package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
)

// certExpiryWarning is how close to its expiry a certificate makes
// check-config warn.
const certExpiryWarning = 21 * 24 * time.Hour

// checkConfigCommand returns "check-config": validate a configuration file
// as serve would, reporting each problem with its file, line and key.
func checkConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-config",
		Usage:     "validate a configuration file and say precisely what is wrong (key, line, why)",
		UsageText: "postern check-config FILE\npostern check-config --config FILE",
		Description: "Reads FILE as `postern serve --config FILE` would, with no flags: TOML syntax, unknown keys,\n" +
			"types, every value, the users file and the TLS certificate. Problems are printed one per line,\n" +
			"FILE:LINE: KEY ...: why and what to write instead, and the command exits 1; a valid file prints\n" +
			"FILE: OK and a summary. Warnings (a certificate close to expiry, a file others can read) do not\n" +
			"fail the check.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true, Usage: "the TOML `FILE` to check"},
		},
		OnUsageError: usageError,
		Action:       checkConfigAction,
	}
}

func checkConfigAction(_ context.Context, cmd *cli.Command) error {
	path := cmd.String(flagConfig)
	switch {
	case cmd.NArg() > 1 || (cmd.NArg() == 1 && path != ""):
		return errors.New("check-config checks one file: postern check-config FILE")
	case cmd.NArg() == 1:
		path = cmd.Args().First()
	case path == "":
		return errors.New("which file? postern check-config FILE")
	}
	r := checkConfig(path)
	root := cmd.Root()
	for _, w := range r.warnings {
		fmt.Fprintf(root.ErrWriter, "%s: warning: %s\n", path, w)
	}
	for _, p := range r.problems {
		fmt.Fprintln(root.ErrWriter, p)
	}
	if n := len(r.problems); n > 0 {
		return fmt.Errorf("%s: %d problem%s: serve would refuse this file", path, n, map[bool]string{true: "s"}[n > 1])
	}
	_, err := fmt.Fprintf(root.Writer, "%s: OK: %s\n", path, r.summary)
	return err
}

// configReport is the outcome of checkConfig.
type configReport struct {
	problems []string // "FILE:LINE: message" or "FILE: message"
	warnings []string
	summary  string // of a valid file
}

// checkConfig validates the file at path as serve would.
func checkConfig(path string) configReport {
	var r configReport
	data, err := os.ReadFile(path)
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("%s: %v", path, err))
		return r
	}
	text := string(data)
	lines := config.KeyLines(text)
	at := func(line int, msg string) string {
		if line > 0 {
			return fmt.Sprintf("%s:%d: %s", path, line, msg)
		}
		return fmt.Sprintf("%s: %s", path, msg)
	}

	var c Config
	md, err := toml.Decode(text, &c)
	if err != nil {
		line, msg := tomlProblem(err)
		r.problems = append(r.problems, at(line, msg))
		return r
	}
	// Unknown keys, each on its own line; the rest of the file is still
	// checked, as it decoded.
	for _, msg := range unknownKeys(md.Undecoded()) {
		key, _, _ := strings.Cut(msg, " ")
		r.problems = append(r.problems, at(config.KeyLine(lines, strings.Split(key, ".")), "unknown key "+msg))
	}

	// The settings declared in package config (a wrong type is reported
	// like a bad value, and that key left at its default).
	var doc map[string]any
	if _, err := toml.Decode(text, &doc); err == nil {
		if c.Declared, err = config.FromTOML(config.Settings(), doc); err != nil {
			r.problems = append(r.problems, at(messageLine(lines, err.Error()), err.Error()))
		}
	}

	// settings stops at the first bad value: clear the key it names and
	// validate again, to report every independent problem at once. An
	// error naming a key already cleared is a consequence of the clearing
	// and ends the loop.
	var s settings
	cleared := map[string]bool{}
	for {
		if s, err = c.settings(); err == nil {
			break
		}
		msg := err.Error()
		key := leadingKey(msg)
		if cleared[key] {
			break
		}
		r.problems = append(r.problems, at(messageLine(lines, msg), msg))
		if key == "" || !clearKey(&c, strings.Split(key, ".")) {
			break
		}
		cleared[key] = true
	}
	r.warnings = append(r.warnings, permissionWarnings(path, c)...)
	r.warnings = append(r.warnings, allowPeerWarnings(c.Relay.AllowPeers)...)
	if c.TLS.Cert != "" && c.TLS.Key != "" {
		host, _ := parseICEHost(c.ICEServers.Host)
		warns, err := checkCertificate(c.TLS.Cert, c.TLS.Key, host)
		if err != nil {
			r.problems = append(r.problems, at(config.KeyLine(lines, []string{"tls", "cert"}), err.Error()))
		}
		r.warnings = append(r.warnings, warns...)
	}
	if len(r.problems) > 0 {
		return r
	}

	api := "off"
	if s.api.listen != "" {
		api = s.api.listen
	}
	specs := make([]string, 0, len(s.listeners))
	for _, l := range s.listeners {
		specs = append(specs, l.String())
	}
	r.summary = fmt.Sprintf("listeners %s; realm %q; %d users, %d secrets; credentials API %s",
		strings.Join(specs, " "), s.realm(), len(s.users)+len(s.keys), len(s.secrets), api)
	if len(s.users)+len(s.keys)+len(s.secrets) == 0 {
		r.warnings = append(r.warnings, "no users and no secrets: serve will generate a secret for each run, so no credential outlives a restart")
	}
	return r
}

// tomlError matches the decoder's errors that are not a toml.ParseError.
var tomlError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// tomlProblem turns a decoding error into a line number and a message
// naming the key and what to write instead.
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
	m := tomlError.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	line, _ := strconv.Atoi(m[1])
	key, why := m[2], m[3]
	if want := expectedType(strings.Split(key, ".")); want != "" && strings.HasPrefix(why, "incompatible types") {
		why = "wrong type: write " + want
	}
	return line, key + ": " + why
}

// expectedType describes what the schema takes at key, with an example.
func expectedType(key []string) string {
	if k, ok := config.KindOf(config.Settings(), strings.Join(key, ".")); ok {
		return config.TypeHint(k)
	}
	t, ok := schemaField(key)
	if !ok {
		return ""
	}
	if t.Kind() == reflect.Pointer { // optional keys whose 0 means something
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a quoted duration such as "10m" or "1h30m"`
	case t.Kind() == reflect.String:
		return `a quoted string`
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "a whole number without quotes"
	case t.Kind() == reflect.Float64:
		return "a number without quotes, such as 10 or 2.5"
	case t.Kind() == reflect.Bool:
		return "true or false, without quotes"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return `an array of strings such as ["a", "b"] (even for one value)`
	case t.Kind() == reflect.Map:
		return `a table such as { alice = "password" }`
	case t.Kind() == reflect.Struct:
		return "a table: [" + strings.Join(key, ".") + "] followed by its keys"
	}
	return ""
}

// leadingKey returns the configuration key a settings error starts with
// ("relay.ports (--relay-ports) ..."), or "".
func leadingKey(msg string) string {
	k := keyMention.FindString(msg)
	if k == "" || !strings.HasPrefix(msg, k) {
		return ""
	}
	if _, ok := schemaField(strings.Split(k, ".")); !ok && !config.Declared(config.Settings(), strings.Split(k, ".")) {
		return ""
	}
	return k
}

// schemaField returns the type of the Config field at key.
func schemaField(key []string) (reflect.Type, bool) {
	t := reflect.TypeFor[Config]()
	for _, name := range key {
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return nil, false
		}
		t = f.Type
	}
	return t, true
}

// clearKey sets the field of c at key to its zero value (the default).
func clearKey(c *Config, key []string) bool {
	if config.Declared(config.Settings(), key) {
		delete(c.Declared, strings.Join(key, "."))
		return true
	}
	v := reflect.ValueOf(c).Elem()
	for _, name := range key {
		if v.Kind() != reflect.Struct {
			return false
		}
		f, ok := fieldByTag(v.Type(), name)
		if !ok {
			return false
		}
		v = v.FieldByIndex(f.Index)
	}
	v.SetZero()
	return true
}

// messageLine returns the line of the first key a settings error names that
// the file defines (the errors start with the key: "relay.ports (--...").
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
func permissionWarnings(path string, c Config) []string {
	if len(c.Auth.Secrets) == 0 && len(c.Auth.Users) == 0 && len(c.CredentialsAPI.APIKeys) == 0 && c.Admin.Token == "" {
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
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		warnings = append(warnings, fmt.Sprintf("tls.cert %s expires on %s: renew it soon", certPath, leaf.NotAfter.UTC().Format(time.DateOnly)))
	}
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			warnings = append(warnings, fmt.Sprintf("tls.cert %s does not cover ice_servers.host %s (%v): browsers will refuse turns: URLs", certPath, host, err))
		}
	}
	return warnings, nil
}
