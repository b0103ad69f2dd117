package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/postern/postern/cluster"
)

// TestClusterRegionRules: cluster.region_rules is a list of PREFIX=REGION
// (TOML array, repeatable flag) reaching cluster.Config; the one string of
// commas written before reads the same.
func TestClusterRegionRules(t *testing.T) {
	want := []cluster.RegionRule{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Region: "eu"},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Region: "us"},
	}
	for _, rules := range []string{`["10.0.0.0/8=eu", "2001:db8::/32=us"]`, `"10.0.0.0/8=eu, 2001:db8::/32=us"`} {
		v, err := readTOMLForTest(t, "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nnode = \"n\"\nregion_rules = "+rules+"\n")
		if err != nil {
			t.Fatalf("region_rules = %s: %v", rules, err)
		}
		c, err := ClusterOf(v)
		if err != nil || c == nil {
			t.Fatalf("region_rules = %s: ClusterOf: %v %v", rules, c, err)
		}
		if !reflect.DeepEqual(c.RegionRules, want) {
			t.Errorf("region_rules = %s: %v, want %v", rules, c.RegionRules, want)
		}
	}
	_, err := readTOMLForTest(t, "[cluster]\nredis = \"redis://127.0.0.1:6379\"\nregion_rules = [\"10.0.0.0/8=eu\", \"nowhere\"]\n")
	if err == nil || !strings.Contains(err.Error(), "cluster.region_rules (--cluster-region-rules)") || !strings.Contains(err.Error(), "PREFIX=REGION") {
		t.Errorf("a bad rule: %v, want an error naming the key and the form", err)
	}
	if c, err := ClusterOf(nil); c != nil || err != nil {
		t.Errorf("no [cluster]: %v %v, want nil", c, err)
	}
}

// readTOMLForTest reads text as a configuration file and resolves it.
func readTOMLForTest(t *testing.T, text string) (Values, error) {
	t.Helper()
	v, problems, err := Read(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		return nil, errors.New(problems[0].Msg)
	}
	return Resolve(Settings(), v)
}
