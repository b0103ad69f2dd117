package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
)

// CategoryWeb is the --help category of the [web] settings.
const CategoryWeb = "Sharing port 443"

// Settings are the declared settings, in the order of --help, the README
// table and config.toml.example.
func Settings() []Setting {
	// Tables in the order of the file (the strict decoder lists valid keys
	// so), realm last as before.
	return slices.Concat(listenSettings(), logSettings(), authSettings(), credentialSettings(),
		relaySettings(), []Setting{ioSetting(), kernelPathSetting(), kernelPathInterfacesSetting()}, addressSettings(), limitsSettings(), tlsSettings(), iceSettings(),
		webSettings(), []Setting{turnHosts()}, proxyFromSettings(), adminSettings(),
		selftestSettings(), clusterSettings(), usageSettings(), realmSettings())
}

// CategoryRelay is the --help category of [relay].
const CategoryRelay = "Relay"

// DefaultRelayPorts is relay.ports's default: the IANA dynamic range
// (RFC 6335 §6), where RFC 8656 §7.2 wants relayed ports by default.
const DefaultRelayPorts = "49152-65535"

// relaySettings is relay.ports; addressSettings (schema.go) are the rest
// of [relay].
func relaySettings() []Setting {
	return []Setting{
		{
			Key: "relay.ports", Flag: "relay-ports", Kind: KindString, Default: DefaultRelayPorts, ZeroIsDefault: true,
			Placeholder: "LOW-HIGH", Category: CategoryRelay, Restart: true,
			Usage: "relay port range LOW-HIGH",
			Check: func(v any) error {
				if _, err := allocations.ParsePortRange(v.(string)); err != nil {
					return fmt.Errorf("%w (write LOW-HIGH, e.g. %s)", err, DefaultRelayPorts)
				}
				return nil
			},
			Set: func(c *relay.Config, v any) {
				c.RelayPorts, _ = allocations.ParsePortRange(v.(string)) // checked
			},
		},
	}
}

// CategoryAuth is the --help category of the authentication settings.
const CategoryAuth = "Authentication"

// DefaultRealm is realm's default.
const DefaultRealm = "postern"

// MaxRealmLen is the limit of RFC 8489 §14.9: "less than 128 characters".
const MaxRealmLen = 127

// BadRealmRune reports a character a realm may not hold: a control
// character or the '"' that would end its quoted-string.
func BadRealmRune(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' }

// authSettings is auth.nonce_lifetime; credentialSettings (schema.go)
// are the rest of [auth].
func authSettings() []Setting { return []Setting{nonceLifetime()} }

// realmSettings is realm, which is in every long-term key, so it needs a
// restart.
func realmSettings() []Setting {
	return []Setting{
		{
			Key: "realm", Flag: "realm", Kind: KindString, Default: DefaultRealm, ZeroIsDefault: true,
			Placeholder: "R", Category: CategoryAuth, Restart: true,
			Usage: "authentication realm R",
			Check: func(v any) error {
				if s := v.(string); len(s) > MaxRealmLen || strings.ContainsFunc(s, BadRealmRune) {
					return valueErrorf("%q: write at most %d printable characters without '\"' (RFC 8489 §14.9)", s, MaxRealmLen)
				}
				return nil
			},
		},
	}
}

// DefaultNonceLifetime is auth.nonce_lifetime's default.
const DefaultNonceLifetime = 10 * time.Minute

// nonceLifetime is auth.nonce_lifetime: a reload applies it to the new
// authenticator, so it is not restart-only.
func nonceLifetime() Setting {
	return Setting{
		Key: "auth.nonce_lifetime", Flag: "nonce-lifetime", Kind: KindDuration, Default: DefaultNonceLifetime, ZeroIsDefault: true,
		Placeholder: "D", Category: CategoryAuth,
		Usage: "how long a nonce stays valid, a duration D such as 90s",
		Check: func(v any) error {
			if d := v.(time.Duration); d < 0 {
				return valueErrorf("%v: write a positive duration such as %q", d, DefaultNonceLifetime.String())
			}
			return nil
		},
	}
}

// NonceLifetime is the resolved auth.nonce_lifetime of v.
func NonceLifetime(v Values) time.Duration {
	return Get(Settings(), v, "auth.nonce_lifetime").(time.Duration)
}

// Realm is the resolved realm of v.
func Realm(v Values) string { return Get(Settings(), v, "realm").(string) }

// CategoryLog is the --help category of [log].
const CategoryLog = "Logging"

// logSettings are the [log] table, read by the command (LogLevel,
// LogFormat) to make its logger; restart-only.
func logSettings() []Setting {
	return []Setting{
		{
			Key: "log.level", Flag: "log-level", Kind: KindString, Default: "info", ZeroIsDefault: true,
			Placeholder: "LEVEL", Category: CategoryLog, Restart: true,
			Usage: "log LEVEL: debug, info, warn or error",
			Check: func(v any) error {
				var l slog.Level
				if err := l.UnmarshalText([]byte(v.(string))); err != nil {
					return valueErrorf("%q: write debug, info, warn or error", v)
				}
				return nil
			},
		},
		{
			Key: "log.format", Flag: "log-format", Kind: KindString, Default: "text", ZeroIsDefault: true,
			Placeholder: "FORMAT", Category: CategoryLog, Restart: true,
			Usage: "log FORMAT: text or json",
			Check: func(v any) error {
				if f := strings.ToLower(v.(string)); f != "text" && f != "json" {
					return valueErrorf("%q: write text or json", v)
				}
				return nil
			},
		},
	}
}

// LogLevel is the resolved log.level of v.
func LogLevel(v Values) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(Get(Settings(), v, "log.level").(string))) // checked by Resolve
	return l
}

// LogFormat is the resolved log.format of v, "text" or "json".
func LogFormat(v Values) string {
	return strings.ToLower(Get(Settings(), v, "log.format").(string))
}

// webSettings are the [web] table's settings but turn_hosts (schema.go).
func webSettings() []Setting {
	return []Setting{
		{
			Key: "web.backend", Flag: "web-backend", Kind: KindString, Default: "",
			DefaultText: "none: browsers get a short built-in page", DocDefault: "none (built-in page)",
			Placeholder: "HOST:PORT", Category: CategoryWeb, Restart: true,
			Usage: "forward TLS and HTTP connections that are not TURN to the web site at HOST:PORT (TLS passed through, not terminated)",
			Check: func(v any) error { return relay.ValidateBackend(v.(string)) },
			Set:   func(c *relay.Config, v any) { c.Web.Backend = v.(string) },
		},
		{
			Key: "web.backend_proxy_protocol", Flag: "web-backend-proxy-protocol", Kind: KindBool, Default: false,
			DocDefault: "off", Category: CategoryWeb, Restart: true,
			Requires: "web.backend", RequiresFix: "name the web site or drop the option",
			Usage: "start each forwarded connection with a PROXY protocol v2 header naming the client",
			Set:   func(c *relay.Config, v any) { c.Web.BackendProxyProtocol = v.(bool) },
		},
		{
			Key: "web.idle_timeout", Flag: "web-idle-timeout", Kind: KindDuration, Default: relay.DefaultWebIdleTimeout,
			Placeholder: "D", Category: CategoryWeb, Restart: true, ZeroIsDefault: true,
			Usage: "close a connection forwarded to --web-backend when no byte has passed either way for D",
			Check: func(v any) error {
				if d := v.(time.Duration); d < 0 {
					return valueErrorf("%v: write a positive duration such as %q", d, relay.DefaultWebIdleTimeout.String())
				}
				return nil
			},
			Set: func(c *relay.Config, v any) { c.Web.IdleTimeout = v.(time.Duration) },
		},
		{
			Key: "web.max_conns", Flag: "web-max-conns", Kind: KindInt, Default: relay.DefaultWebMaxConns,
			Placeholder: "N", Category: CategoryWeb, Restart: true,
			Usage: "at most N connections forwarded to --web-backend, apart from --max-conns; 0 = no cap",
			Check: func(v any) error {
				if n := v.(int); n < 0 {
					return valueErrorf("%d: write 0 for no cap or a positive count", n)
				}
				return nil
			},
			Set: func(c *relay.Config, v any) {
				c.Web.MaxConns = v.(int)
				if c.Web.MaxConns == 0 {
					c.Web.MaxConns = -1 // relay: negative is no cap
				}
			},
		},
		{
			Key: "web.quic_backend", Flag: "web-quic-backend", Kind: KindString, Default: "",
			DefaultText: "off", Placeholder: "HOST:PORT", Category: CategoryWeb, Restart: true,
			Usage: "forward UDP datagrams that are not STUN or TURN (QUIC, HTTP/3) to the QUIC server at HOST:PORT",
			Check: hostPort,
			Set:   func(c *relay.Config, v any) { c.QUIC.Backend = v.(string) },
		},
		{
			Key: "web.quic_backend_proxy_protocol", Flag: "web-quic-backend-proxy-protocol", Kind: KindBool, Default: false,
			DefaultText: "off", Category: CategoryWeb, Restart: true, Requires: "web.quic_backend",
			Usage: "put a PROXY v2 header naming the client in front of each datagram forwarded to --web-quic-backend",
			Set:   func(c *relay.Config, v any) { c.QUIC.BackendProxyProtocol = v.(bool) },
		},
		{
			// RFC 4787 §4.3, REQ-5: "A NAT UDP mapping timer MUST NOT
			// expire in less than two minutes"; also longer than the 30 s
			// idle timeout of quic-go and Chromium.
			Key: "web.quic_idle_timeout", Flag: "web-quic-idle-timeout", Kind: KindDuration, Default: relay.DefaultQUICIdleTimeout,
			Placeholder: "D", Category: CategoryWeb, Restart: true,
			Usage: "end a QUIC flow when its client has sent nothing for D",
			Check: positiveDuration,
			Set:   func(c *relay.Config, v any) { c.QUIC.IdleTimeout = v.(time.Duration) },
		},
		{
			Key: "web.quic_max_flows", Flag: "web-quic-max-flows", Kind: KindInt, Default: relay.DefaultQUICMaxFlows,
			Placeholder: "N", Category: CategoryWeb, Restart: true,
			Usage: "at most N QUIC flows in total; negative: no cap",
			Check: flowCap,
			Set:   func(c *relay.Config, v any) { c.QUIC.MaxFlows = v.(int) },
		},
		{
			Key: "web.quic_max_flows_per_client", Flag: "web-quic-max-flows-per-client", Kind: KindInt, Default: relay.DefaultQUICMaxFlowsPerClient,
			Placeholder: "N", Category: CategoryWeb, Restart: true,
			Usage: "at most N QUIC flows per client IPv4 address or IPv6 /64; negative: no cap",
			Check: flowCap,
			Set:   func(c *relay.Config, v any) { c.QUIC.MaxFlowsPerClient = v.(int) },
		},
	}
}

// CategoryLimits and CategoryDrain are the --help categories of [limits]
// and [drain].
const (
	CategoryLimits = "Limits"
	CategoryDrain  = "Draining"
)

// DefaultMaxConns is limits.max_conns's default, sized to memory: an idle
// TCP connection costs the server about 14 KiB (a 4 KiB buffer, the socket,
// an 8 KiB goroutine stack), an idle TLS one about 35 KiB (TLS state, a
// 16 KiB stack), and one that has not allocated at most about 52 KiB (TLS
// records of 16 KiB); so 10 000 connections hold about 140-350 MiB idle, at
// most about 510 MiB before they authenticate (README, "Security and abuse
// limits"). Raise it on a larger host.
const DefaultMaxConns = 10000

// Per-address limits are generous: many users can share one NAT address.
const (
	// DefaultMaxConnsPerIP is limits.max_conns_per_ip's default.
	DefaultMaxConnsPerIP = 256
	// DefaultDrainTimeout is drain.timeout's default.
	DefaultDrainTimeout = 10 * time.Minute
)

// limitsSettings are the abuse limits of [limits] and the [drain] table.
// The UDP answer limits' defaults are relay's, whose comment gives the
// arithmetic (a 09:00 meeting behind one NAT). All need a restart.
func limitsSettings() []Setting {
	unlimited := func(key, flag, placeholder, usage string, set func(c *relay.Config, n int)) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindInt, Default: 0, DefaultText: "0, unlimited", DocDefault: "`0` (unlimited)",
			Placeholder: placeholder, Category: CategoryLimits, Restart: true, Usage: usage,
			Check: nonNegative("write 0 for unlimited or a positive number"),
			Set:   func(c *relay.Config, v any) { set(c, v.(int)) },
		}
	}
	rate := func(key, flag string, def float64, usage string, set func(c *relay.Config, r float64)) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindFloat, Default: def,
			Placeholder: "R", Category: CategoryLimits, Restart: true, Usage: usage,
			Check: func(v any) error {
				if r := v.(float64); r < 0 {
					return valueErrorf("%v: write 0 for no limit or answers per second such as %v", r, def)
				}
				return nil
			},
			Set: func(c *relay.Config, v any) { set(c, v.(float64)) },
		}
	}
	burst := func(key, flag string, def int, usage string, set func(c *relay.Config, n int)) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindInt, Default: def, ZeroIsDefault: true,
			Placeholder: "N", Category: CategoryLimits, Restart: true, Usage: usage,
			Check: nonNegative("write 0 for unlimited or a positive number"),
			Set:   func(c *relay.Config, v any) { set(c, v.(int)) },
		}
	}
	connCap := func(key, flag string, def int, usage string, set func(c *relay.Config, n int)) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindInt, Default: def,
			Placeholder: "N", Category: CategoryLimits, Restart: true, Usage: usage,
			Check: nonNegative("write 0 for no cap or a positive count"),
			Set:   func(c *relay.Config, v any) { set(c, v.(int)) },
		}
	}
	timeout := func(key, flag string, def time.Duration, category, usage string, set func(c *relay.Config, d time.Duration)) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindDuration, Default: def, ZeroIsDefault: true,
			Placeholder: "D", Category: category, Restart: true, Usage: usage,
			Check: func(v any) error {
				if d := v.(time.Duration); d < 0 {
					return valueErrorf("%v: write a positive duration such as %q", d, def.String())
				}
				return nil
			},
			Set: func(c *relay.Config, v any) {
				if set != nil {
					set(c, v.(time.Duration))
				}
			},
		}
	}
	return []Setting{
		{
			Key: "limits.user_quota", Flag: "user-quota", Kind: KindInt, Default: 0, DefaultText: "0, unlimited", DocDefault: "`0` (unlimited)",
			Placeholder: "N", Category: CategoryLimits, Restart: true,
			Usage: "at most N allocations per user across all listeners",
			Check: nonNegative("write 0 for unlimited or a positive count"),
			Set:   func(c *relay.Config, v any) { c.UserQuota = v.(int) },
		},
		timeout("limits.max_lifetime", "max-lifetime", relay.DefaultMaxLifetime, CategoryLimits,
			"longest allocation lifetime a client may request, a duration D such as 2h",
			func(c *relay.Config, d time.Duration) { c.MaxLifetime = d }),
		{
			// 0, the default, stands for relay.DefaultAllocationLifetime,
			// or max_lifetime when that is shorter: an unset default
			// lifetime follows a max lifetime set below it rather than
			// failing the check.
			Key: "limits.default_lifetime", Flag: "default-lifetime", Kind: KindDuration, Default: time.Duration(0),
			DefaultText: relay.DefaultAllocationLifetime.String(), DocDefault: "`10m`",
			Placeholder: "D", Category: CategoryLimits, Restart: true,
			Usage:  "lifetime of allocations that request less, a duration D such as 5m",
			Relate: relateDefaultLifetime,
			Set: func(c *relay.Config, v any) {
				c.DefaultLifetime = v.(time.Duration)
				if c.DefaultLifetime == 0 {
					c.DefaultLifetime = min(relay.DefaultAllocationLifetime, c.MaxLifetime) // max_lifetime is set first
				}
			},
		},
		unlimited("limits.ip_quota", "ip-quota", "N", "at most N allocations per client IP address across all listeners",
			func(c *relay.Config, n int) { c.IPQuota = n }),
		unlimited("limits.total_quota", "total-quota", "N", "at most N allocations in all (508 Insufficient Capacity beyond)",
			func(c *relay.Config, n int) { c.TotalQuota = n }),
		unlimited("limits.allocation_bandwidth", "allocation-bandwidth", "BYTES", "relay at most BYTES per second each way per allocation; excess is dropped",
			func(c *relay.Config, n int) { c.AllocationBandwidth = int64(n) }),
		unlimited("limits.user_bandwidth", "user-bandwidth", "BYTES", "relay at most BYTES per second each way for all of one user's allocations",
			func(c *relay.Config, n int) { c.UserBandwidth = int64(n) }),
		rate("limits.unauthenticated_rate", "unauthenticated-rate", relay.DefaultUnauthenticatedRate,
			"UDP answers per second R to one address's (IPv6: /64's) unauthenticated requests (401, 438, 400, 420); 0 = no limit",
			func(c *relay.Config, r float64) { c.UnauthenticatedRate = r }),
		burst("limits.unauthenticated_burst", "unauthenticated-burst", relay.DefaultUnauthenticatedBurst, "burst N of --unauthenticated-rate (0: the default)",
			func(c *relay.Config, n int) { c.UnauthenticatedBurst = n }),
		rate("limits.binding_rate", "binding-rate", relay.DefaultBindingRate,
			"UDP Binding answers per second R to one address (IPv6: /64); 0 = no limit",
			func(c *relay.Config, r float64) { c.BindingRate = r }),
		burst("limits.binding_burst", "binding-burst", relay.DefaultBindingBurst, "burst N of --binding-rate (0: the default)",
			func(c *relay.Config, n int) { c.BindingBurst = n }),
		connCap("limits.max_conns", "max-conns", DefaultMaxConns, "at most N TCP/TLS client connections in all; 0 = no cap",
			func(c *relay.Config, n int) { c.MaxConns = n }),
		connCap("limits.max_conns_per_ip", "max-conns-per-ip", DefaultMaxConnsPerIP, "at most N TCP/TLS connections per source address; 0 = no cap",
			func(c *relay.Config, n int) { c.MaxConnsPerIP = n }),
		timeout("limits.handshake_timeout", "handshake-timeout", relay.DefaultHandshakeTimeout, CategoryLimits,
			"close TCP/TLS connections whose first byte, PROXY header or TLS handshake takes longer than D",
			func(c *relay.Config, d time.Duration) { c.HandshakeTimeout = d }),
		timeout("limits.idle_timeout", "idle-timeout", relay.DefaultIdleTimeout, CategoryLimits,
			"close TCP/TLS connections that have had no allocation for D (not yet, or since a Refresh with lifetime 0)",
			func(c *relay.Config, d time.Duration) { c.IdleTimeout = d }),
		{
			Key: "drain.alternate_server", Flag: "alternate-server", Kind: KindString, Default: "",
			DefaultText: "none: 508", DocDefault: "none (508)", Placeholder: "IP:PORT", Category: CategoryDrain, Restart: true,
			Usage: "while draining, send allocating clients to IP:PORT (300 Try Alternate)",
			Check: func(v any) error {
				if _, err := netip.ParseAddrPort(v.(string)); err != nil {
					return valueErrorf("%q: write IP:PORT, e.g. 203.0.113.8:3478 or [2001:db8::8]:3478", v)
				}
				return nil
			},
			Set: func(c *relay.Config, v any) {
				c.AlternateServer = netip.AddrPort{}
				if s := v.(string); s != "" {
					c.AlternateServer = netip.MustParseAddrPort(s) // checked
				}
			},
		},
		// drain.timeout is read by the command's drain sequence
		// (Get(Settings(), v, "drain.timeout")), not by the relay.
		timeout("drain.timeout", "drain-timeout", DefaultDrainTimeout, CategoryDrain,
			"after a drain, SIGTERM waits up to D for the last allocation to end", nil),
	}
}

// relateDefaultLifetime checks limits.default_lifetime against
// limits.max_lifetime.
func relateDefaultLifetime(get func(string) any) error {
	dl, ml := get("limits.default_lifetime").(time.Duration), get("limits.max_lifetime").(time.Duration)
	def := min(relay.DefaultAllocationLifetime, ml)
	switch {
	case dl < 0:
		return fmt.Errorf("limits.default_lifetime (--default-lifetime) %v: write a positive duration such as %q", dl, def.String())
	case dl == 0:
		dl = def
	}
	if dl > ml {
		return fmt.Errorf("limits.default_lifetime (--default-lifetime) %v > limits.max_lifetime (--max-lifetime) %v: lower the default or raise the maximum", dl, ml)
	}
	return nil
}

// nonNegative checks a count where 0 has a meaning of its own (fix says which).
func nonNegative(fix string) func(v any) error {
	return func(v any) error {
		if n := v.(int); n < 0 {
			return valueErrorf("%d: %s", n, fix)
		}
		return nil
	}
}
