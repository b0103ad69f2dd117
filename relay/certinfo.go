package relay

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"time"

	"github.com/postern/postern/relay/sniff"
)

// Certificate sources, as CertificateInfo.Source reports them.
const (
	CertSourceACME       = "acme"        // obtained and renewed by ACME (acme.go)
	CertSourceConfigured = "configured"  // tls.cert/tls.key, or SetCertificate
	CertSourceSelfSigned = "self-signed" // generated at start (SelfSignedCertificate)
)

// CertificateInfo describes a certificate the TLS listeners serve, for the
// admin dashboard. It holds nothing secret.
type CertificateInfo struct {
	// Source is CertSourceACME, CertSourceConfigured or CertSourceSelfSigned.
	Source string
	// Names are the DNS names and IP addresses the certificate is for (its
	// subject's common name when it lists none); for an ACME domain still
	// waiting for its first certificate, that domain.
	Names []string
	// Issuer is the issuer's common name (or its whole name).
	Issuer string
	// NotBefore and NotAfter bound its validity; both are zero for an ACME
	// domain that has no certificate yet.
	NotBefore, NotAfter time.Time
}

// Certificates returns the certificates the TLS listeners hand out now,
// soonest expiry first: ACME's, one per managed domain, when ACME is on;
// otherwise (or while ACME has none yet) the configured or self-signed
// one. Nil when the server has no TLS. It only reads: nothing is obtained,
// renewed or loaded by asking.
func (s *Server) Certificates() []CertificateInfo {
	var out []CertificateInfo
	haveACME := false
	if m := s.acme.Load(); m != nil && s.cfg.ACME != nil {
		for _, d := range s.cfg.ACME.Domains {
			d = sniff.NormalizeHost(d)
			var best *x509.Certificate
			for _, c := range m.cache.AllMatchingCertificates(d) {
				if leaf := leafOf(&c.Certificate); leaf != nil && (best == nil || leaf.NotAfter.After(best.NotAfter)) {
					best = leaf
				}
			}
			if best == nil {
				out = append(out, CertificateInfo{Source: CertSourceACME, Names: []string{d}})
				continue
			}
			haveACME = true
			info := certInfo(best)
			info.Source = CertSourceACME
			out = append(out, info)
		}
	}
	if c := s.cert.Load(); c != nil && !haveACME {
		if leaf := leafOf(c); leaf != nil {
			info := certInfo(leaf)
			info.Source = CertSourceConfigured
			// Signed by its own key (CheckSignatureFrom would insist on a
			// CA, which the generated certificate is not).
			if bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
				leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
				info.Source = CertSourceSelfSigned
			}
			out = append(out, info)
		}
	}
	slices.SortStableFunc(out, func(a, b CertificateInfo) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

// leafOf returns c's parsed leaf certificate, or nil when it has none that
// parses.
func leafOf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

func certInfo(leaf *x509.Certificate) CertificateInfo {
	info := CertificateInfo{Issuer: leaf.Issuer.CommonName, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	if info.Issuer == "" {
		info.Issuer = leaf.Issuer.String()
	}
	info.Names = append(info.Names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, ip.String())
	}
	if len(info.Names) == 0 && leaf.Subject.CommonName != "" {
		info.Names = []string{leaf.Subject.CommonName}
	}
	return info
}
