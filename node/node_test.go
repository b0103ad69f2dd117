package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

func TestACMEConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	p := config.ACME{Domains: []string{"a.example.org"}, CA: relay.DefaultACMECA}
	conf, err := acmeConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if conf.Storage != filepath.Join(dir, "acme") || conf.RootCAs != nil || conf.CA != relay.DefaultACMECA {
		t.Errorf("config %+v", conf)
	}
	if fi, err := os.Stat(conf.Storage); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("storage directory: %v %v, want mode 0700", fi, err)
	}

	p.CARoot = filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(p.CARoot, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := acmeConfig(p); err == nil || !strings.Contains(err.Error(), "tls.acme_ca_root") {
		t.Errorf("a root file without PEM: err = %v", err)
	}
	if conf, err := acmeConfig(config.ACME{}); conf != nil || err != nil {
		t.Errorf("ACME off: %v %v", conf, err)
	}
}
