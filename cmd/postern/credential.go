package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
)

// Flags of the credential and ice-servers commands (flagConfig, flagSecret,
// flagUser and flagRealm are shared with serve).
const (
	flagSecretFile = "secret-file"
	flagTTL        = "ttl"
	flagJSON       = "json"
	flagHost       = "host"
	flagPorts      = "ports"
)

// envSecret names the environment variable holding the minting secret, so
// it need not appear in shell history or ps.
const envSecret = "POSTERN_SECRET"

// maxSecretFile bounds what is read from --secret-file and stdin.
const maxSecretFile = 64 << 10

// credentialCommand returns "credential": mint a TURN REST API credential,
// and its subcommand "hash".
func credentialCommand() *cli.Command {
	return &cli.Command{
		Name:  "credential",
		Usage: "print a short-lived TURN REST API credential (or, with hash, a users-file key)",
		UsageText: "postern credential [--secret S | --secret-file FILE] [--config FILE] [--user NAME] [--ttl 24h] [--json]\n" +
			"postern credential hash --user NAME [--realm R | --config FILE] < password",
		Description: "Mints username EXPIRY:NAME and password base64(HMAC-SHA1(secret, username)), the TURN REST API\n" +
			"scheme of auth.secrets. The secret is the first found of: --secret, --secret-file, $" + envSecret + ",\n" +
			"the first of auth.secrets in --config. --user and --ttl default to ice_servers.user and\n" +
			"ice_servers.ttl of --config, else postern and 24h.",
		Flags: append(mintFlags(), &cli.BoolFlag{Name: flagJSON,
			Usage: `print {"username": ..., "credential": ..., "expires": RFC 3339} instead of KEY=VALUE lines`}),
		OnUsageError: usageError,
		Action:       credentialAction,
		Commands:     []*cli.Command{credentialHashCommand()},
	}
}

// mintFlags are the flags of every command that mints a credential.
func mintFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true,
			Usage: "read auth.secrets and [ice_servers] from the TOML `FILE`"},
		&cli.StringFlag{Name: flagSecret,
			Usage: "mint with the shared secret `S` (visible in ps: prefer --secret-file or $" + envSecret + ")"},
		&cli.StringFlag{Name: flagSecretFile, TakesFile: true,
			Usage: "read the secret from `FILE` (one line)"},
		&cli.StringFlag{Name: flagUser,
			Usage:       "the USER part of the username EXPIRY:USER, `NAME` (per-user quotas count it)",
			DefaultText: "ice_servers.user, else " + config.DefaultICEUser},
		&cli.DurationFlag{Name: flagTTL,
			Usage:       "how long the credential stays valid, a duration `D` such as 1h",
			DefaultText: "ice_servers.ttl, else " + shortDuration(config.DefaultICETTL)},
	}
}

// shortDuration formats d without zero minutes and seconds: "24h", not
// "24h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// credentialJSON is what credential --json prints: the username and
// credential members of RTCIceServer, and when the credential expires.
type credentialJSON struct {
	Username   string `json:"username"`
	Credential string `json:"credential"`
	Expires    string `json:"expires"` // RFC 3339, UTC
}

func credentialAction(_ context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("credential takes no arguments, got %q (the subcommand is `credential hash`)", cmd.Args().First())
	}
	m, err := loadMinting(cmd)
	if err != nil {
		return err
	}
	now := time.Now()
	username, password := auth.MintREST(m.secret, m.user, m.ttl, now)
	expires := time.Unix(now.Add(m.ttl).Unix(), 0).UTC().Format(time.RFC3339)

	w := cmd.Root().Writer
	if cmd.Bool(flagJSON) {
		b, err := json.Marshal(credentialJSON{Username: username, Credential: password, Expires: expires})
		if err != nil {
			return fmt.Errorf("credential JSON: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	// KEY=VALUE lines a shell can eval; values are quoted when needed.
	_, err = fmt.Fprintf(w, "username=%s\ncredential=%s\nexpires=%s\n", shellQuote(username), shellQuote(password), expires)
	return err
}

// minting is what a credential is minted from.
type minting struct {
	secret string
	user   string
	ttl    time.Duration
	config config.Values // the --config file as written (not validated), or nil
}

// loadMinting reads --config (if given) and resolves the secret, user and
// TTL, flags first.
func loadMinting(cmd *cli.Command) (minting, error) {
	var m minting
	path := cmd.String(flagConfig)
	if path != "" {
		var err error
		if m.config, err = config.Load(path); err != nil {
			return minting{}, err
		}
	}
	ice, err := iceOf(m.config)
	if err != nil {
		return minting{}, fmt.Errorf("config %s: %w", path, err)
	}
	if m.secret, err = mintingSecret(cmd, m.config, os.Getenv); err != nil {
		return minting{}, err
	}
	m.user = ice.User
	if cmd.IsSet(flagUser) {
		m.user = cmd.String(flagUser)
		if err := iceapi.CheckUser(m.user); err != nil {
			return minting{}, fmt.Errorf("--%s %q: %w", flagUser, m.user, err)
		}
	}
	m.ttl = ice.TTL
	if cmd.IsSet(flagTTL) {
		if m.ttl = cmd.Duration(flagTTL); m.ttl < time.Second {
			return minting{}, fmt.Errorf("--%s %v: write a duration of at least 1s, such as 1h or 24h", flagTTL, m.ttl)
		}
	}
	return m, nil
}

// iceOf validates the [ice_servers] table of a file alone (the minting
// commands run where the rest of the server's file may not hold: its users
// file, its certificate).
func iceOf(c config.Values) (config.ICE, error) {
	v, err := config.Resolve(config.Subset("ice_servers.host", "ice_servers.user", "ice_servers.ttl"), c)
	if err != nil {
		return config.ICE{}, err
	}
	return config.ICEOf(v), nil
}

// mintingSecret returns the secret to mint with: --secret, else
// --secret-file, else $POSTERN_SECRET, else the first of the config's
// auth.secrets.
func mintingSecret(cmd *cli.Command, c config.Values, getenv func(string) string) (string, error) {
	switch {
	case cmd.IsSet(flagSecret) && cmd.IsSet(flagSecretFile):
		return "", fmt.Errorf("--%s and --%s both given: keep one", flagSecret, flagSecretFile)
	case cmd.IsSet(flagSecret):
		if s := cmd.String(flagSecret); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("--%s is empty: give the server's auth.secrets value", flagSecret)
	case cmd.IsSet(flagSecretFile):
		return readSecretFile(cmd.String(flagSecretFile))
	}
	if s := getenv(envSecret); s != "" {
		return s, nil
	}
	if secrets, _ := c["auth.secrets"].([]string); len(secrets) > 0 && secrets[0] != "" {
		return secrets[0], nil
	}
	return "", fmt.Errorf("no secret: give --%s FILE, set $%s, or --%s FILE with auth.secrets (the first one mints); --%s S works too but shows in ps",
		flagSecretFile, envSecret, flagConfig, flagSecret)
}

// readSecretFile reads a secret stored alone in a file, as
// `openssl rand -base64 32 > FILE` writes it: one line, the final newline
// and surrounding blanks dropped.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagSecretFile, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("--%s %s: %w", flagSecretFile, path, err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("--%s %s: larger than %d bytes: the file should hold only the secret", flagSecretFile, path, maxSecretFile)
	}
	secret := strings.TrimSpace(string(data))
	switch {
	case secret == "":
		return "", fmt.Errorf("--%s %s: the file is empty: write the secret in it", flagSecretFile, path)
	case strings.ContainsAny(secret, "\r\n"):
		return "", fmt.Errorf("--%s %s: more than one line: the file should hold only the secret", flagSecretFile, path)
	}
	return secret, nil
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe unquoted.
func shellQuote(s string) string {
	safe := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+-./:=@_,%", r))
	})
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// credentialHashCommand returns "credential hash": print the users-file
// line NAME:0x<MD5(NAME:REALM:PASSWORD)> for a password read from stdin.
func credentialHashCommand() *cli.Command {
	return &cli.Command{
		Name:      "hash",
		Usage:     "read a password from stdin and print the users-file line NAME:0x<long-term key>",
		UsageText: "postern credential hash --user NAME [--realm R | --config FILE] < password",
		Description: "Prints NAME:0x<hex of MD5(NAME:REALM:PASSWORD)> (RFC 8489 §9.2.2; coturn's turnadmin -k form),\n" +
			"ready to append to auth.users_file, so the file holds no password. The key is bound to the realm:\n" +
			"use the server's (--realm, else realm of --config, else " + config.DefaultRealm + "). The password is the first\n" +
			"line of stdin; on a terminal it is asked for twice without echo.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagUser, Usage: "the user `NAME`"},
			&cli.StringFlag{Name: flagRealm, Usage: "the server's realm `R`", DefaultText: "realm of --config, else " + config.DefaultRealm},
			&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true, Usage: "read the realm from the TOML `FILE`"},
		},
		OnUsageError: usageError,
		Action:       credentialHashAction,
	}
}

func credentialHashAction(_ context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("credential hash takes no arguments, got %q: the password is read from stdin", cmd.Args().First())
	}
	user := cmd.String(flagUser)
	if err := checkUsersFileName(user); err != nil {
		return fmt.Errorf("--%s %q: %w", flagUser, user, err)
	}
	realm := config.DefaultRealm
	if path := cmd.String(flagConfig); path != "" {
		c, err := config.Load(path)
		if err != nil {
			return err
		}
		if r, _ := c["realm"].(string); r != "" {
			realm = r
		}
	}
	if cmd.IsSet(flagRealm) {
		realm = cmd.String(flagRealm)
	}
	if realm == "" || len(realm) > config.MaxRealmLen || strings.ContainsFunc(realm, config.BadRealmRune) {
		return fmt.Errorf("--%s %q: write the server's realm: at most %d printable characters without '\"'", flagRealm, realm, config.MaxRealmLen)
	}
	root := cmd.Root()
	password, err := readPassword(root.Reader, root.ErrWriter)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(root.Writer, auth.UsersFileLine(user, realm, password))
	return err
}

// checkUsersFileName reports whether name survives a users-file line
// (auth.CheckUsersFileName), naming the flag when it is missing.
func checkUsersFileName(name string) error {
	if name == "" {
		return fmt.Errorf("give the user name with --%s NAME", flagUser)
	}
	return auth.CheckUsersFileName(name)
}

// readPassword reads the password: on a terminal, twice without echo (the
// prompts go to prompt); otherwise the first line of r, which must be the
// only one.
func readPassword(r io.Reader, prompt io.Writer) (string, error) {
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return readPasswordTerminal(int(f.Fd()), prompt)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("stdin holds more than %d bytes: give one password", maxSecretFile)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), maxSecretFile+1)
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	switch {
	case len(lines) == 0 || lines[0] == "":
		return "", errors.New("no password on stdin: pipe it in, e.g. printf '%s\\n' \"$PASSWORD\" | postern credential hash ...")
	case len(lines) > 1:
		return "", errors.New("stdin holds more than one line: give one password (a password cannot contain a newline)")
	}
	return lines[0], nil
}

// readPasswordTerminal asks for the password twice without echo.
func readPasswordTerminal(fd int, prompt io.Writer) (string, error) {
	ask := func(what string) (string, error) {
		fmt.Fprint(prompt, what)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	p1, err := ask("Password: ")
	if err != nil {
		return "", err
	}
	if p1 == "" {
		return "", errors.New("empty password")
	}
	p2, err := ask("Again: ")
	if err != nil {
		return "", err
	}
	if p1 != p2 {
		return "", errors.New("the two passwords differ: nothing printed")
	}
	return p1, nil
}
