package main

// The cluster's PKI: one CA per cluster, generated on first start and reused
// afterwards; leaf certificates are renewed when they are missing, near expiry,
// no longer signed by the CA or missing a required name.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	caValidity     = 10 * 365 * 24 * time.Hour
	leafValidity   = 365 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
	serviceCIDR    = "10.96.0.0/16"
	kubernetesSvc  = "10.96.0.1"
	clusterDomain  = "cluster.local"
	saIssuer       = "https://kubernetes.default.svc." + clusterDomain
	certFileMode   = 0o644
	keyFileMode    = 0o600
	secretsDirMode = 0o700
)

// pki holds the paths of every file of the cluster's PKI.
type pki struct {
	dir string
	ca  *x509.Certificate
	key crypto.Signer
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// leafSpec describes one leaf certificate.
type leafSpec struct {
	file   string // base name: <file>.crt and <file>.key
	cn     string
	orgs   []string
	server bool
	client bool
	dns    []string
	ips    []net.IP
}

func loopbackIPs() []net.IP { return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")} }

// leafSpecs lists the leaf certificates of a cluster.
func leafSpecs() []leafSpec {
	return []leafSpec{
		{
			file: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc." + clusterDomain},
			ips: append(loopbackIPs(), net.ParseIP(kubernetesSvc)),
		},
		{file: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, client: true},
		{file: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{file: "scheduler", cn: "system:kube-scheduler", client: true},
		{file: "node-simulator", cn: "localk8s:node-simulator", orgs: []string{"system:masters"}, client: true},
		{file: "etcd-server", cn: "etcd", server: true, client: true, dns: []string{"localhost"}, ips: loopbackIPs()},
		{file: "etcd-client", cn: "kube-apiserver-etcd-client", client: true},
	}
}

// ensurePKI loads or creates the PKI in dir.
func ensurePKI(dir, clusterName string) (*pki, error) {
	if err := os.MkdirAll(dir, secretsDirMode); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, secretsDirMode); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	if err := p.ensureCA(clusterName); err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	for _, s := range leafSpecs() {
		if err := p.ensureLeaf(s); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", s.file, err)
		}
	}
	if err := p.ensureServiceAccountKey(); err != nil {
		return nil, fmt.Errorf("service account key: %w", err)
	}
	return p, nil
}

func (p *pki) ensureCA(clusterName string) error {
	crtPath, keyPath := p.path("ca.crt"), p.path("ca.key")
	crt, key, err := loadPair(crtPath, keyPath)
	if err == nil {
		if time.Until(crt.NotAfter) < renewBefore {
			logf("warning: the cluster CA expires on %s; delete the data dir to start a new cluster", crt.NotAfter.Format(time.RFC3339))
		}
		p.ca, p.key = crt, key
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "localk8s-ca " + clusterName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	crt, err = x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := writeCert(crtPath, der); err != nil {
		return err
	}
	p.ca, p.key = crt, key
	logf("generated cluster CA in %s", p.dir)
	return nil
}

// leafOK tells whether an existing leaf certificate can be kept.
func (p *pki) leafOK(s leafSpec, crt *x509.Certificate) bool {
	if time.Until(crt.NotAfter) < renewBefore {
		return false
	}
	if err := crt.CheckSignatureFrom(p.ca); err != nil {
		return false
	}
	for _, d := range s.dns {
		if !slices.Contains(crt.DNSNames, d) {
			return false
		}
	}
	for _, ip := range s.ips {
		if !slices.ContainsFunc(crt.IPAddresses, ip.Equal) {
			return false
		}
	}
	return crt.Subject.CommonName == s.cn && slices.Equal(crt.Subject.Organization, s.orgs)
}

func (p *pki) ensureLeaf(s leafSpec) error {
	crtPath, keyPath := p.path(s.file+".crt"), p.path(s.file+".key")
	if crt, _, err := loadPair(crtPath, keyPath); err == nil && p.leafOK(s, crt) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
	}
	if s.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeCert(crtPath, der)
}

// ensureServiceAccountKey creates the key pair that signs service account
// tokens (sa.key) and verifies them (sa.pub).
func (p *pki) ensureServiceAccountKey() error {
	keyPath, pubPath := p.path("sa.key"), p.path("sa.pub")
	if _, err := loadKey(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	return atomicWrite(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), certFileMode)
}

// pemFiles returns the PEM bytes of a leaf certificate and its key.
func (p *pki) pemFiles(file string) (crt, key []byte, err error) {
	if crt, err = os.ReadFile(p.path(file + ".crt")); err != nil {
		return nil, nil, err
	}
	if key, err = os.ReadFile(p.path(file + ".key")); err != nil {
		return nil, nil, err
	}
	return crt, key, nil
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func loadPair(crtPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	data, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", crtPath)
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", crtPath, err)
	}
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(crt.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyPath, crtPath)
	}
	return crt, key, nil
}

func loadKey(keyPath string) (crypto.Signer, error) {
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type", keyPath)
	}
	return signer, nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return atomicWrite(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyFileMode)
}

func writeCert(path string, der []byte) error {
	return atomicWrite(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certFileMode)
}

// atomicWrite writes data to a temporary file in the same directory, syncs it
// and renames it over path, so readers see the old or the new content only.
func atomicWrite(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
