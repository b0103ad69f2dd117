package admin_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/admin"
)

// TestFleetDashboard checks the fleet's Grafana dashboard: valid JSON, a
// node variable, and panels that query only metrics the server exports,
// each selected by $node.
func TestFleetDashboard(t *testing.T) {
	dash := readDashboard(t, "fleet.json")
	hasNode := false
	for _, v := range dash.Templating.List {
		q, _ := v.Query.(string)
		hasNode = hasNode || (v.Name == "node" && strings.Contains(q, "node)"))
	}
	if !hasNode {
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
