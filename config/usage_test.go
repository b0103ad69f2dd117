package config

import (
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

// TestUsageSettings: records are off by default; a bad Redis URL or
// interval is refused naming the key and flag; the interval reaches the
// relay; max_len 0 means no trimming.
func TestUsageSettings(t *testing.T) {
	if _, ok := UsageConfig(nil); ok {
		t.Error("usage records on by default")
	}
	for _, c := range []struct {
		key  string
		v    any
		want string
	}{
		{"usage.redis", "http://redis:6379", "usage.redis (--usage-redis)"},
		{"usage.interval", 10 * time.Millisecond, "usage.interval (--usage-interval)"},
		{"usage.max_len", -1, "usage.max_len (--usage-max-len)"},
	} {
		if _, err := Resolve(Settings(), Values{c.key: c.v}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v: error %v, want one naming %s", c.key, c.v, err, c.want)
		}
	}
	v, err := Resolve(Settings(), Values{"usage.redis": "rediss://:pw@redis:6379", "usage.max_len": 0, "usage.interval": time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cfg, ok := UsageConfig(v)
	if !ok || cfg.Redis != "rediss://:pw@redis:6379" || cfg.MaxLen >= 0 || cfg.Stream != "postern:usage" {
		t.Errorf("UsageConfig = %+v, %v", cfg, ok)
	}
	var rc relay.Config
	Apply(Settings(), v, &rc)
	if rc.UsageInterval != time.Minute {
		t.Errorf("relay UsageInterval %v, want 1m", rc.UsageInterval)
	}
}
