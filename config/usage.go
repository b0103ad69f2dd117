package config

import (
	"time"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/usage"
)

// CategoryUsage is the --help category of [usage].
const CategoryUsage = "Usage records"

// DefaultUsageInterval is usage.interval's default: a billing system sees
// a long call's traffic within five minutes, and a node that crashes
// loses at most five minutes of it, for one record per allocation per
// five minutes (a few hundred bytes).
const DefaultUsageInterval = 5 * time.Minute

// usageSettings are the [usage] table: records of what each allocation
// relayed (package usage). Off unless file or redis is set; restart-only,
// since the writer is made at start.
func usageSettings() []Setting {
	return []Setting{
		{
			Key: "usage.file", Flag: "usage-file", Kind: KindString, Default: "", DefaultText: "off",
			Placeholder: "FILE", Category: CategoryUsage, Restart: true,
			Usage: "append a usage record (JSON line) to FILE at the end of every allocation and every --usage-interval (ignored when --usage-redis is set)",
		},
		{
			Key: "usage.redis", Flag: "usage-redis", Kind: KindString, Default: "", DefaultText: "off",
			Placeholder: "URL", Category: CategoryUsage, Restart: true,
			Usage: "add usage records to a Redis stream at URL (redis:// or rediss://)",
			Check: func(v any) error {
				if err := usage.CheckRedisURL(v.(string)); err != nil {
					return valueErrorf("%q: %v: write redis://HOST:PORT or rediss://HOST:PORT", v, err)
				}
				return nil
			},
		},
		{
			Key: "usage.stream", Flag: "usage-stream", Kind: KindString, Default: usage.DefaultStream, ZeroIsDefault: true,
			Placeholder: "KEY", Category: CategoryUsage, Restart: true,
			Usage: "key of the Redis stream of usage records",
		},
		{
			Key: "usage.max_len", Flag: "usage-max-len", Kind: KindInt, Default: usage.DefaultMaxLen,
			Placeholder: "N", Category: CategoryUsage, Restart: true,
			Usage: "trim the stream to about N records (XADD MAXLEN ~); 0 = never trim",
			Check: nonNegative("write 0 for no trimming or a positive count"),
		},
		{
			Key: "usage.interval", Flag: "usage-interval", Kind: KindDuration, Default: DefaultUsageInterval,
			Placeholder: "D", Category: CategoryUsage, Restart: true,
			Usage: "an interim usage record of every allocation older than D, every D; 0s = final records only",
			Check: func(v any) error {
				if d := v.(time.Duration); d < 0 || (d > 0 && d < time.Second) {
					return valueErrorf("%v: write 0s (final records only) or at least 1s, such as %q", d, DefaultUsageInterval.String())
				}
				return nil
			},
			Set: func(c *relay.Config, v any) { c.UsageInterval = v.(time.Duration) },
		},
	}
}

// UsageConfig is the writer's configuration of the resolved v: ok is
// false when usage records are off (neither usage.file nor usage.redis).
// Node and Logger are the caller's.
func UsageConfig(v Values) (cfg usage.Config, ok bool) {
	get := func(key string) any { return Get(Settings(), v, key) }
	cfg = usage.Config{
		File:   get("usage.file").(string),
		Redis:  get("usage.redis").(string),
		Stream: get("usage.stream").(string),
		MaxLen: int64(get("usage.max_len").(int)),
	}
	if cfg.MaxLen == 0 {
		cfg.MaxLen = -1 // usage.Config: negative is no trimming
	}
	return cfg, cfg.File != "" || cfg.Redis != ""
}
