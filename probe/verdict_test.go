package probe_test

import (
	"testing"

	"github.com/postern/postern/probe"
)

func TestVerdictOf(t *testing.T) {
	doors := probe.Doors(3478, 5349, 443)
	for name, tc := range map[string]struct {
		works []bool
		want  string
	}{
		"all":      {[]bool{true, true, true, true, true, true}, "calls will work"},
		"udp 443":  {[]bool{false, false, false, true, false, false}, "calls will work"},
		"tls 443":  {[]bool{false, false, false, false, false, true}, "calls will work only over TLS 443"},
		"tcp":      {[]bool{false, true, false, false, true, false}, "calls will work only over TCP 3478 or TCP 443"},
		"none":     {make([]bool, 6), "calls will fail: ask your IT to allow UDP 3478 or TLS 443"},
		"no works": {nil, "calls will fail: ask your IT to allow UDP 3478 or TLS 443"},
	} {
		if got := probe.VerdictOf(doors, tc.works); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
