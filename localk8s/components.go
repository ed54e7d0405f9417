package main

// The upstream control plane components, run in this process from their own
// packages with the same flags their binaries take. The cobra commands of the
// binaries are not used because each installs its own signal handler and
// logging setup, which can happen only once per process.

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// parseNamedFlags parses args against the union of a component's flag sets.
// The flags are shared by pointer, so "Changed" is visible through each set.
func parseNamedFlags(component string, fss cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, name := range fss.Order {
		fs.AddFlagSet(fss.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}

// controllers of kube-controller-manager that have nothing to do in a
// cluster without a cloud, volumes or autoscaling metrics.
var disabledControllers = []string{
	"horizontal-pod-autoscaler-controller",
	"node-ipam-controller",
	"persistentvolume-attach-detach-controller",
	"persistentvolume-expander-controller",
	"ephemeral-volume-controller",
	"service-lb-controller",
	"node-route-controller",
	"cloud-node-lifecycle-controller",
	"resourceclaim-controller",
	"device-taint-eviction-controller",
	"selinux-warning-controller",
	"storage-version-migrator-controller",
}

type apiserverSettings struct {
	listener   net.Listener
	port       int
	etcdURL    string
	pki        *pki
	watchCache bool
	extraArgs  []string
}

// prepareAPIServer validates the kube-apiserver options and returns a function
// that runs it until ctx ends, plus its loopback client configuration.
func prepareAPIServer(ctx context.Context, s apiserverSettings) (func(context.Context) error, error) {
	opts := apiserveroptions.NewServerRunOptions()
	fss := opts.Flags()
	p := s.pki
	args := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", s.port),
		"--etcd-servers=" + s.etcdURL,
		"--etcd-cafile=" + p.path("ca.crt"),
		"--etcd-certfile=" + p.path("etcd-client.crt"),
		"--etcd-keyfile=" + p.path("etcd-client.key"),
		"--client-ca-file=" + p.path("ca.crt"),
		"--tls-cert-file=" + p.path("apiserver.crt"),
		"--tls-private-key-file=" + p.path("apiserver.key"),
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No endpoint for the "kubernetes" service: endpoints may not be
		// loopback addresses, and nothing in the cluster dials the apiserver
		// through that service.
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=1h",
		fmt.Sprintf("--watch-cache=%t", s.watchCache),
	}
	args = append(args, s.extraArgs...)
	if err := parseNamedFlags("kube-apiserver", fss, args); err != nil {
		return nil, err
	}
	opts.SecureServing.Listener = s.listener
	if err := opts.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	completed, err := opts.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	config, err := apiserverapp.NewConfig(completed)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver config: %w", err)
	}
	cc, err := config.Complete()
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver config: %w", err)
	}
	server, err := apiserverapp.CreateServerChain(cc)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	return prepared.Run, nil
}

// runScheduler runs kube-scheduler until ctx ends.
func runScheduler(ctx context.Context, kubeconfig string) error {
	opts := scheduleroptions.NewOptions()
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}
	if err := parseNamedFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	return schedulerapp.Run(ctx, cc, sched)
}

// runControllerManager runs kube-controller-manager until ctx ends.
func runControllerManager(ctx context.Context, kubeconfig, clusterName string, p *pki) error {
	opts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	fss := opts.Flags(known, disabled, aliases)
	opts.ParsedFlags = &fss
	controllers := "*,-" + strings.Join(disabledControllers, ",-")
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
		"--cluster-name=" + clusterName,
		"--controllers=" + controllers,
		"--service-account-private-key-file=" + p.path("sa.key"),
		"--root-ca-file=" + p.path("ca.crt"),
		"--cluster-signing-cert-file=" + p.path("ca.crt"),
		"--cluster-signing-key-file=" + p.path("ca.key"),
		"--use-service-account-credentials=true",
		// New nodes carry the not-ready taint until the node lifecycle
		// controller's next pass sees them Ready; pass sooner than every 5s.
		"--node-monitor-period=2s",
	}
	if err := parseNamedFlags("kube-controller-manager", fss, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// Like the binary: controllers list deprecated APIs on purpose.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	c, err := opts.Config(ctx, known, disabled, aliases)
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	return kcmapp.Run(ctx, c.Complete())
}
