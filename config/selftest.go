package config

import (
	"errors"
	"time"

	"golang.org/x/time/rate"

	"github.com/postern/postern/selftest"
)

// CategorySelftest is the --help category of [selftest].
const CategorySelftest = "Self-test page"

// selftestSettings are the [selftest] table: the browser self-test page
// (package selftest) and its test-only minting endpoint. All need a
// restart: the page is given to the listeners when they start.
func selftestSettings() []Setting {
	return []Setting{
		{
			// Off by default: the endpoint hands relay credentials to
			// anyone who asks.
			Key: "selftest.enabled", Flag: "selftest", Kind: KindBool, Default: false,
			DocDefault: "off", Category: CategorySelftest, Restart: true,
			Usage:  "serve the self-test page with its credential minting endpoint (on the 443 listeners without --web-backend, and on /test of --credentials-api)",
			Relate: relateSelftest,
		},
		{
			Key: "selftest.ttl", Flag: "selftest-ttl", Kind: KindDuration, Default: selftest.DefaultTTL,
			Placeholder: "D", Category: CategorySelftest, Restart: true, Requires: "selftest.enabled", RequiresFix: "enable the self-test or drop the option",
			Usage: "lifetime D of the self-test's credentials (at most 1h)",
			Check: func(v any) error {
				if d := v.(time.Duration); d <= 0 || d > selftest.MaxTTL {
					return valueErrorf("%v: write a duration above 0 and at most %s, such as %q", d, selftest.MaxTTL, selftest.DefaultTTL.String())
				}
				return nil
			},
		},
		{
			Key: "selftest.rate", Flag: "selftest-rate", Kind: KindFloat, Default: float64(selftest.DefaultRate),
			Placeholder: "R", Category: CategorySelftest, Restart: true, Requires: "selftest.enabled", RequiresFix: "enable the self-test or drop the option",
			Usage: "self-test credentials per second R to one client address, after the burst",
			Check: func(v any) error {
				if r := v.(float64); r <= 0 {
					return valueErrorf("%v: write credentials per second above 0, such as %v", r, float64(selftest.DefaultRate))
				}
				return nil
			},
		},
		{
			Key: "selftest.burst", Flag: "selftest-burst", Kind: KindInt, Default: selftest.DefaultBurst,
			Placeholder: "N", Category: CategorySelftest, Restart: true, Requires: "selftest.enabled", RequiresFix: "enable the self-test or drop the option",
			Usage: "self-test credentials N one client address may get at once",
			Check: func(v any) error {
				if n := v.(int); n < 1 {
					return valueErrorf("%d: write a count of 1 or more", n)
				}
				return nil
			},
		},
	}
}

// Selftest is the self-test configuration of resolved values v: Enabled,
// TTL, Rate and Burst (the caller adds the secret and the ports).
func Selftest(v Values) selftest.Config {
	get := func(key string) any { return Get(Settings(), v, key) }
	return selftest.Config{
		Enabled: get("selftest.enabled").(bool),
		TTL:     get("selftest.ttl").(time.Duration),
		Rate:    rate.Limit(get("selftest.rate").(float64)),
		Burst:   get("selftest.burst").(int),
	}
}

// relateSelftest refuses a self-test that could mint nothing the relay
// accepts: it mints TURN REST credentials, and static users' passwords are
// never handed out. With no credentials configured at all, the secret
// generated at start serves.
func relateSelftest(get func(string) any) error {
	if !get("selftest.enabled").(bool) || len(get("auth.secrets").([]string)) > 0 {
		return nil
	}
	users, keys, err := users(get)
	if err != nil || len(users) == 0 && len(keys) == 0 {
		return nil // the users file's error is auth.users_file's; none at all: serve generates a secret
	}
	return errors.New("selftest.enabled (--selftest): the self-test mints TURN REST credentials and needs a REST secret: " +
		"add one to auth.secrets (--secret); static users' passwords are never handed out")
}
