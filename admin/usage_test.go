package admin_test

import (
	"strings"
	"testing"
)

// TestUsageMetrics: the usage writer's counts, through relay.Stats, are
// exported as postern_usage_records_total and _write_errors_total.
func TestUsageMetrics(t *testing.T) {
	code, body := serveFake(t, newFake(), "GET", "/metrics", testToken)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`postern_usage_records_total{result="written"} 12`,
		`postern_usage_records_total{result="dropped"} 3`,
		`postern_usage_write_errors_total 2`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
