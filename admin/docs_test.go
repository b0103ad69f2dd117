package admin_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/postern/postern/admin"
)

var metricName = regexp.MustCompile(`postern_[a-z_]+`)

// grafanaDashboard is what the dashboard tests read of a Grafana JSON
// file under deploy/grafana.
type grafanaDashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// readDashboard decodes deploy/grafana/NAME.
func readDashboard(t *testing.T, name string) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var dash grafanaDashboard
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return dash
}

// TestDashboardUsesTheMetrics checks that the Grafana dashboard is valid
// JSON, queries only metrics the server exports, and shows every one.
func TestDashboardUsesTheMetrics(t *testing.T) {
	dash := readDashboard(t, "postern.json")
	known := admin.MetricNames()
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			for _, name := range metricName.FindAllString(target.Expr, -1) {
				if !slices.Contains(known, name) {
					t.Errorf("panel %q queries %s, which the server does not export", p.Title, name)
				}
				used[name] = true
			}
		}
	}
	for _, name := range known {
		if !used[name] {
			t.Errorf("the dashboard shows no panel of %s", name)
		}
	}
}

// TestReadmeListsTheMetrics checks that the README's Operations section and
// the alerting rules name only real metrics, and the README all of them.
func TestReadmeListsTheMetrics(t *testing.T) {
	known := admin.MetricNames()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range known {
		if !regexp.MustCompile("`" + name + "`").Match(readme) {
			t.Errorf("README.md does not document %s", name)
		}
	}
	for _, file := range []string{"../README.md", "../deploy/prometheus/alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(b), -1) {
			if !slices.Contains(known, name) {
				t.Errorf("%s names %s, which the server does not export", file, name)
			}
		}
	}
}
