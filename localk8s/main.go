// Command clustermgmt-localk8s runs a Kubernetes control plane in one process:
// embedded etcd, kube-apiserver, kube-scheduler and kube-controller-manager
// from the upstream Go modules, and a simulator of N nodes. It serves on
// loopback only and keeps all state (etcd data, PKI, kubeconfigs) in its data
// dir, so a restarted process resumes the same cluster.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
)

// kubernetesVersion is the version of k8s.io/kubernetes this binary is built
// from, as recorded by the Go toolchain.
func kubernetesVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "k8s.io/kubernetes" {
				return d.Version
			}
		}
	}
	return version.Get().GitVersion
}

var logPrefix = "localk8s"

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s: %s\n", time.Now().Format("2006-01-02T15:04:05.000Z07:00"), logPrefix, fmt.Sprintf(format, args...))
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

type config struct {
	dataDir    string
	name       string
	nodes      int
	port       int
	logLevel   string
	v          int
	watchCache bool
	nodeCPU    string
	nodeMemory string
	nodePods   string
	apiArgs    stringList
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var cfg config
	fs := flag.NewFlagSet("clustermgmt-localk8s", flag.ContinueOnError)
	fs.StringVar(&cfg.dataDir, "data-dir", "", "directory of the cluster's state (required)")
	fs.StringVar(&cfg.name, "name", "localk8s", "cluster name (a DNS label); nodes are named <name>-node-<i>")
	fs.IntVar(&cfg.nodes, "nodes", 1, "number of simulated nodes")
	fs.IntVar(&cfg.port, "port", 0, "apiserver port on 127.0.0.1 (0: the previous run's port if free, else an ephemeral one)")
	fs.StringVar(&cfg.logLevel, "log-level", "warning", "log level of the Kubernetes components: error, warning or info")
	fs.IntVar(&cfg.v, "v", 0, "klog verbosity of the Kubernetes components (with --log-level=info)")
	fs.BoolVar(&cfg.watchCache, "watch-cache", true, "enable the apiserver watch cache (off saves memory, costs etcd reads)")
	fs.StringVar(&cfg.nodeCPU, "node-cpu", "4", "CPU capacity of each simulated node")
	fs.StringVar(&cfg.nodeMemory, "node-memory", "8Gi", "memory capacity of each simulated node")
	fs.StringVar(&cfg.nodePods, "node-pods", "110", "pod capacity of each simulated node")
	fs.Var(&cfg.apiArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--audit-log-path=/x (repeatable)")
	showVersion := fs.Bool("version", false, "print the Kubernetes version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: clustermgmt-localk8s --data-dir DIR [flags]\n\n"+
			"Runs a local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler,\n"+
			"kube-controller-manager) with simulated nodes on 127.0.0.1.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(kubernetesVersion())
		return
	}
	if err := validate(&cfg, fs.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "clustermgmt-localk8s: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func validate(cfg *config, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments: %q", args)
	}
	if cfg.dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if !dnsLabel.MatchString(cfg.name) || len(cfg.name) > 40 {
		return fmt.Errorf("--name %q: must be a DNS label of at most 40 characters (lower case letters, digits, '-')", cfg.name)
	}
	if cfg.nodes < 0 || cfg.nodes > 256 {
		return fmt.Errorf("--nodes %d: must be between 0 and 256", cfg.nodes)
	}
	if cfg.port < 0 || cfg.port > 65535 {
		return fmt.Errorf("--port %d: out of range", cfg.port)
	}
	switch cfg.logLevel {
	case "error", "warning", "info":
	default:
		return fmt.Errorf("--log-level %q: must be error, warning or info", cfg.logLevel)
	}
	abs, err := filepath.Abs(cfg.dataDir)
	if err != nil {
		return err
	}
	cfg.dataDir = abs
	return nil
}

// setupKlog routes the Kubernetes components' logs to stderr, filtered by
// severity and without the messages every healthy start prints.
func setupKlog(level string, v int) {
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	_ = kfs.Set("logtostderr", "false")
	_ = kfs.Set("alsologtostderr", "false")
	_ = kfs.Set("stderrthreshold", "FATAL")
	_ = kfs.Set("v", strconv.Itoa(v))
	min := map[string]byte{"error": 'E', "warning": 'W', "info": 'I'}[level]
	// Every entry is written to the INFO "file"; the others are dropped so
	// that an entry is printed once.
	klog.SetOutputBySeverity("INFO", &klogFilter{min: min})
	for _, sev := range []string{"WARNING", "ERROR", "FATAL"} {
		klog.SetOutputBySeverity(sev, io.Discard)
	}
}

// Messages of the components that do not point at a problem here.
var klogNoise = []string{
	"because it has no resources",                     // API versions that are off by default
	"The manifest file is empty, ignoring",            // kube-proxy/kubelet options nobody uses here
	"Found stale data, removed previous endpoints",    // --endpoint-reconciler-type=none
	"setting componentGlobalsRegistry in SetFallback", // components share the registry
	"is not as new as written version",                // informer consistency check, retried
	"Failed to ensure lease exists, will retry",       // first start: kube-system not created yet
	`namespaces \"kube-system\" not found`,            // first start, likewise
}

type klogFilter struct {
	mu  sync.Mutex
	min byte
}

func severityRank(b byte) int { return strings.IndexByte("IWEF", b) }

func (f *klogFilter) Write(p []byte) (int, error) {
	if len(p) == 0 || severityRank(p[0]) < severityRank(f.min) {
		return len(p), nil
	}
	for _, n := range klogNoise {
		if bytes.Contains(p, []byte(n)) {
			return len(p), nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return os.Stderr.Write(p)
}

func run(cfg config) error {
	setupKlog(cfg.logLevel, cfg.v)
	if os.Getenv("GOGC") == "" {
		// An idle cluster's heap is mostly long-lived caches; collecting
		// earlier keeps the resident size about 15% smaller for little CPU.
		debug.SetGCPercent(50)
	}
	etcdLevel := map[string]string{"error": "error", "warning": "error", "info": "info"}[cfg.logLevel]
	kubeVersion := kubernetesVersion()
	logPrefix = "localk8s[" + cfg.name + "]"

	// Signals are handled from here on; before the apiserver is ready they
	// end the start-up at the next step.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	if err := os.MkdirAll(cfg.dataDir, secretsDirMode); err != nil {
		return err
	}
	if err := os.Chmod(cfg.dataDir, secretsDirMode); err != nil {
		return err
	}
	lock, err := lockDataDir(cfg.dataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	readyPath := filepath.Join(cfg.dataDir, "ready.json")
	pidPath := filepath.Join(cfg.dataDir, "localk8s.pid")
	_ = os.Remove(readyPath) // left over by a killed run
	if err := atomicWrite(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidPath)

	p, err := ensurePKI(filepath.Join(cfg.dataDir, "pki"), cfg.name)
	if err != nil {
		return err
	}

	// Ports: the previous run's when free, so that kubeconfigs stay valid.
	portsPath := filepath.Join(cfg.dataDir, "ports.json")
	prev := readPorts(portsPath)
	want, exact := prev.APIServer, false
	if cfg.port != 0 {
		want, exact = cfg.port, true
	}
	apiLn, apiPort, err := listenLoopback(want, exact)
	if err != nil {
		return fmt.Errorf("apiserver listener: %w", err)
	}
	etcdClient, err := freePort(prev.EtcdClient, apiPort)
	if err != nil {
		return err
	}
	etcdPeer, err := freePort(prev.EtcdPeer, apiPort, etcdClient)
	if err != nil {
		return err
	}
	if err := writeJSON(portsPath, ports{APIServer: apiPort, EtcdClient: etcdClient, EtcdPeer: etcdPeer}, 0o644); err != nil {
		return err
	}
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	// Kubeconfigs: the admin's for users, one per component.
	adminKubeconfig := filepath.Join(cfg.dataDir, "admin.kubeconfig")
	if err := writeKubeconfig(adminKubeconfig, p, cfg.name, endpoint, "admin"); err != nil {
		return err
	}
	for _, c := range []string{"controller-manager", "scheduler", "node-simulator"} {
		if err := writeKubeconfig(p.path(c+".kubeconfig"), p, cfg.name, endpoint, c); err != nil {
			return err
		}
	}

	start := time.Now()
	logf("starting Kubernetes %s on %s (data dir %s, %d nodes)", kubeVersion, endpoint, cfg.dataDir, cfg.nodes)
	etcd, err := startEtcd(cfg.dataDir, p, etcdClient, etcdPeer, etcdLevel)
	if err != nil {
		apiLn.Close()
		return err
	}
	var etcdOnce sync.Once
	closeEtcd := func() {
		etcdOnce.Do(func() {
			etcdLogLevel.SetLevel(zapcore.FatalLevel)
			etcd.Close()
		})
	}
	defer closeEtcd()

	apiCtx, stopAPI := context.WithCancel(context.Background())
	defer stopAPI()
	runAPI, err := prepareAPIServer(apiCtx, apiserverSettings{
		listener:   apiLn,
		port:       apiPort,
		etcdURL:    fmt.Sprintf("https://127.0.0.1:%d", etcdClient),
		pki:        p,
		watchCache: cfg.watchCache,
		extraArgs:  cfg.apiArgs,
	})
	if err != nil {
		apiLn.Close()
		return err
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- runAPI(apiCtx) }()

	restCfg, err := clientcmd.BuildConfigFromFlags("", p.path("node-simulator.kubeconfig"))
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = 50, 100
	restCfg.UserAgent = "localk8s-node-simulator"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}

	// Wait for the apiserver, stopping early on a signal or its failure.
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelWait()
	readyzErr := make(chan error, 1)
	go func() { readyzErr <- waitReadyz(waitCtx, client) }()
	select {
	case err := <-readyzErr:
		if err != nil {
			return fmt.Errorf("apiserver did not become ready: %w", err)
		}
	case err := <-apiDone:
		return fmt.Errorf("apiserver stopped: %v", err)
	case sig := <-signals:
		// Stopping the apiserver while its start-up hooks run makes it exit
		// the process at once; let it finish starting, then stop it.
		logf("%s before the cluster was ready; stopping once the apiserver has started", sig)
		select {
		case <-readyzErr:
		case err := <-apiDone:
			apiDone <- err
		case sig := <-signals:
			logf("%s received again; exiting now", sig)
			return errors.New("interrupted")
		}
		stopAPI()
		select {
		case <-apiDone:
		case <-time.After(30 * time.Second):
			logf("warning: apiserver did not stop within 30s")
		}
		logf("stopped")
		return nil
	}
	logf("apiserver ready after %s", time.Since(start).Round(time.Millisecond))

	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	defer stopCtrl()
	var wg sync.WaitGroup
	compErr := make(chan error, 3)
	startComponent := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctrlCtx); err != nil && ctrlCtx.Err() == nil {
				compErr <- fmt.Errorf("%s: %w", name, err)
			} else if ctrlCtx.Err() == nil {
				compErr <- fmt.Errorf("%s stopped", name)
			}
		}()
	}
	startComponent("kube-scheduler", func(ctx context.Context) error {
		return runScheduler(ctx, p.path("scheduler.kubeconfig"))
	})
	startComponent("kube-controller-manager", func(ctx context.Context) error {
		return runControllerManager(ctx, p.path("controller-manager.kubeconfig"), cfg.name, p)
	})
	sim, err := newNodeSimulator(client, cfg.name, cfg.nodes, kubeVersion, cfg.nodeCPU, cfg.nodeMemory, cfg.nodePods)
	if err != nil {
		return err
	}
	nodesReady := make(chan struct{})
	startComponent("node simulator", func(ctx context.Context) error {
		sim.run(ctx, nodesReady)
		return nil
	})

	// The cluster is ready for users once the nodes are registered and the
	// default service account exists (pods can be created).
	clusterReady := make(chan error, 1)
	go func() {
		select {
		case <-nodesReady:
		case <-ctrlCtx.Done():
			return
		}
		clusterReady <- waitUsable(ctrlCtx, client)
	}()

	exitErr := error(nil)
loop:
	for {
		select {
		case err := <-clusterReady:
			if err != nil {
				logf("warning: %v", err)
			}
			info := readyInfo{Endpoint: endpoint, Kubeconfig: adminKubeconfig, PID: os.Getpid(),
				Version: kubeVersion, Name: cfg.name, Nodes: cfg.nodes}
			if err := writeJSON(readyPath, info, 0o644); err != nil {
				exitErr = err
				break loop
			}
			logf("cluster ready after %s: %s (kubeconfig %s)", time.Since(start).Round(time.Millisecond), endpoint, adminKubeconfig)
		case err := <-compErr:
			exitErr = err
			break loop
		case err := <-apiDone:
			exitErr = fmt.Errorf("apiserver stopped: %v", err)
			apiDone <- exitErr
			break loop
		case err := <-etcd.Err():
			exitErr = fmt.Errorf("etcd: %w", err)
			break loop
		case sig := <-signals:
			logf("%s received; stopping", sig)
			break loop
		}
	}

	// Shutdown: announce it, stop the controllers, then the apiserver, then etcd.
	_ = os.Remove(readyPath)
	go func() {
		sig := <-signals
		logf("%s received again; exiting now", sig)
		os.Exit(1)
	}()
	stopCtrl()
	waitTimeout(&wg, 10*time.Second)
	stopAPI()
	select {
	case <-apiDone:
	case <-time.After(30 * time.Second):
		logf("warning: apiserver did not stop within 30s")
	}
	closeEtcd()
	if exitErr != nil {
		return exitErr
	}
	logf("stopped")
	return nil
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func waitReadyz(ctx context.Context, client kubernetes.Interface) error {
	var last error
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitUsable waits until pods can be created and scheduled: the default
// service account exists and no simulated node has the not-ready taint that
// nodes are registered with.
func waitUsable(ctx context.Context, client kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	usable := func() (bool, string) {
		if _, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, "the default service account did not appear"
		}
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: simulatedLabel + "=true"})
		if err != nil {
			return false, "nodes could not be listed: " + err.Error()
		}
		for _, n := range nodes.Items {
			for _, t := range n.Spec.Taints {
				if t.Key == corev1.TaintNodeNotReady && nodeReady(&n) {
					return false, "node " + n.Name + " kept its not-ready taint"
				}
			}
		}
		return true, ""
	}
	for {
		ok, why := usable()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not fully usable after 90s: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
