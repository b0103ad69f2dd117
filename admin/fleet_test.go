package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/postern/postern/admin"
)

type fakeFleet struct{ degraded bool }

func (fakeFleet) Name() string      { return "eu-1" }
func (fakeFleet) Region() string    { return "eu" }
func (f fakeFleet) Degraded() bool  { return f.degraded }
func (fakeFleet) Fallbacks() uint64 { return 7 }
func (fakeFleet) LiveNodes() int    { return 3 }

// TestFleetMetricsAndNode: a node of a fleet names itself in
// postern_node_info and in the sessions API, with the fleet's metrics; a
// node alone exports none of them.
func TestFleetMetricsAndNode(t *testing.T) {
	get := func(fleet admin.Fleet, path string) string {
		adm, err := admin.New(admin.Config{Token: testToken, Relay: newFake(), Version: "9.9.9-fake", Fleet: fleet, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		adm.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", path, rec.Code)
		}
		return rec.Body.String()
	}
	m := get(fakeFleet{degraded: true}, "/metrics")
	for _, want := range []string{`postern_node_info{node="eu-1",region="eu"} 1`, "postern_cluster_redis_up 0",
		"postern_cluster_fallbacks_total 7", "postern_cluster_nodes 3"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if s := get(fakeFleet{}, "/api/sessions"); !strings.Contains(s, `"node": "eu-1"`) {
		t.Errorf("sessions without the node name: %s", s)
	}
	if m := get(nil, "/metrics"); strings.Contains(m, "postern_node_info{") || strings.Contains(m, "postern_cluster_redis_up ") {
		t.Error("a node alone exports fleet metrics")
	}
	if s := get(nil, "/api/sessions"); strings.Contains(s, `"node"`) {
		t.Errorf("a node alone names a node in sessions: %s", s)
	}
}
