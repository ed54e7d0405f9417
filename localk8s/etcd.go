package main

// Embedded etcd: one member on loopback, client and peer traffic over mutual
// TLS with certificates of the cluster's CA.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLogLevel is raised before etcd is closed: closing its listeners makes
// it log errors that mean nothing on a deliberate stop.
var etcdLogLevel = zap.NewAtomicLevelAt(zapcore.ErrorLevel)

func startEtcd(dataDir string, p *pki, clientPort, peerPort int, logLevel string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "localk8s"
	cfg.Dir = filepath.Join(dataDir, "etcd")
	clientURL := url.URL{Scheme: "https", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peerURL := url.URL{Scheme: "https", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	tls := transport.TLSInfo{
		CertFile:       p.path("etcd-server.crt"),
		KeyFile:        p.path("etcd-server.key"),
		TrustedCAFile:  p.path("ca.crt"),
		ClientCertAuth: true,
	}
	cfg.ClientTLSInfo = tls
	cfg.PeerTLSInfo = tls
	if err := etcdLogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, err
	}
	zcfg := zap.NewProductionConfig()
	zcfg.Level = etcdLogLevel
	zcfg.Sampling = nil
	zcfg.DisableStacktrace = true
	zcfg.OutputPaths, zcfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	zcfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	lg, err := zcfg.Build(zap.Fields(zap.String("component", "etcd")))
	if err != nil {
		return nil, err
	}
	cfg.Logger = "zap"
	cfg.LogLevel = logLevel
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	cfg.EnableGRPCGateway = false
	// A single member never needs a long raft log to catch a follower up;
	// fewer entries between snapshots keep etcd's memory small.
	cfg.SnapshotCount = 5000
	cfg.SnapshotCatchUpEntries = 1000
	cfg.ExperimentalSnapshotCatchUpEntries = 1000
	cfg.QuotaBackendBytes = 2 << 30

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready within 60s")
	}
}
