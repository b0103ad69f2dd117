package config

import (
	"time"

	"github.com/postern/postern/relay"
)

// CategoryWeb is the --help category of the [web] settings (the same name
// cmd/postern gives its other [web] flags).
const CategoryWeb = "Sharing port 443"

// Settings are the declared settings, in the order of --help, the README
// table and config.toml.example.
func Settings() []Setting {
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
