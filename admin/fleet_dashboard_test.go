package admin_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/admin"
)

// TestFleetDashboard checks the fleet's Grafana dashboard: valid JSON, a
// node variable, and panels that query only metrics the server exports,
// each selected by $node.
func TestFleetDashboard(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	type variable struct {
		Name  string `json:"name"`
		Query any    `json:"query"`
	}
	var dash struct {
		Templating struct {
			List []variable `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("fleet.json: %v", err)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v variable) bool {
		q, _ := v.Query.(string)
		return v.Name == "node" && strings.Contains(q, "node)")
	}) {
		t.Error("fleet.json has no node variable drawn from the node label")
	}
	known := admin.MetricNames()
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			if !strings.Contains(target.Expr, `node=~"$node"`) {
				t.Errorf("panel %q: %s is not selected by $node", p.Title, target.Expr)
			}
			for _, name := range metricName.FindAllString(target.Expr, -1) {
				if !slices.Contains(known, name) {
					t.Errorf("panel %q queries %s, which the server does not export", p.Title, name)
				}
			}
		}
	}
}
