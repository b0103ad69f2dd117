// Package deploy holds Postern's deployment files, not Go code: a hardened
// systemd unit, a Dockerfile, Kubernetes manifests, Prometheus scrape and
// alerting files and a Grafana dashboard (see README.md in this directory).
// Its tests check them: the unit with systemd-analyze verify where systemd
// is installed, the Dockerfile and manifests for the properties the README
// promises.
package deploy
