package main

// Files the helper keeps in its data dir besides etcd's data and the PKI:
// kubeconfigs, the ready file, the pid file, the ports of the last run and
// the lock that keeps a second instance away from the same data dir.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig with embedded certificates for the
// client certificate named file of the PKI.
func writeKubeconfig(path string, p *pki, clusterName, endpoint, file string) error {
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return err
	}
	crt, key, err := p.pemFiles(file)
	if err != nil {
		return err
	}
	user := clusterName + "-" + file
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: endpoint, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	cfg.Contexts[clusterName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: user}
	cfg.CurrentContext = clusterName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return atomicWrite(path, data, keyFileMode)
}

// readyInfo is the content of <data-dir>/ready.json.
type readyInfo struct {
	Endpoint   string `json:"endpoint"`
	Kubeconfig string `json:"kubeconfig"`
	PID        int    `json:"pid"`
	Version    string `json:"version"`
	Name       string `json:"name"`
	Nodes      int    `json:"nodes"`
}

func writeJSON(path string, v any, mode os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicWrite(path, append(data, '\n'), mode)
}

// ports remembers the ports of the last run so that a restarted cluster keeps
// its endpoint when the ports are still free.
type ports struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func readPorts(path string) ports {
	var p ports
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &p)
	}
	return p
}

// listenLoopback listens on 127.0.0.1:port; with preferred > 0 it tries that
// port first and falls back to an ephemeral port.
func listenLoopback(preferred int, exact bool) (net.Listener, int, error) {
	if preferred > 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(preferred)))
		if err == nil {
			return ln, preferred, nil
		}
		if exact {
			return nil, 0, fmt.Errorf("port %d: %w", preferred, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	return ln, ln.Addr().(*net.TCPAddr).Port, nil
}

// freePort returns a port that was free a moment ago (preferring preferred).
// It is used for etcd, which opens its listeners itself.
func freePort(preferred int, avoid ...int) (int, error) {
	for range 20 {
		ln, port, err := listenLoopback(preferred, false)
		if err != nil {
			return 0, err
		}
		ln.Close()
		clash := false
		for _, a := range avoid {
			clash = clash || a == port
		}
		if !clash {
			return port, nil
		}
		preferred = 0
	}
	return 0, errors.New("no free port found")
}

// lockDataDir takes an exclusive lock on the data dir for the lifetime of
// the process. The returned file must stay open.
func lockDataDir(dataDir string) (*os.File, error) {
	path := dataDir + "/localk8s.lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		pid := ""
		if b, err := os.ReadFile(dataDir + "/localk8s.pid"); err == nil {
			pid = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		return nil, fmt.Errorf("another localk8s is running on %s%s", dataDir, pid)
	}
	return f, nil
}
