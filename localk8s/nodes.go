package main

// The node simulator stands in for the kubelets of N nodes: it registers the
// Node objects, renews their leases, posts their status and runs the pods
// bound to them (it marks them Running and Ready, completes pods that are not
// restarted, and finishes deletions as a kubelet would). No container runs.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

const (
	// Every node the simulator owns carries this label.
	simulatedLabel = "localk8s.cratekube.io/simulated"
	// notReadyAnnotation on a node makes the simulator report it NotReady.
	// "true" (or "") uses the reason KubeletNotReady; any other value except
	// "false" is taken as the reason.
	notReadyAnnotation = "localk8s.cratekube.io/not-ready"
	// exitCodeAnnotation on a pod that is not restarted (restartPolicy Never
	// or OnFailure) sets the exit code its containers finish with.
	exitCodeAnnotation = "localk8s.cratekube.io/exit-code"

	leaseDuration      = 40 // seconds, as a kubelet
	leaseRenewInterval = 10 * time.Second
	statusInterval     = time.Minute
	completeAfter      = time.Second
	nodeHostIP         = "127.0.0.1"
	podCIDRPrefix      = "10.244."
)

type nodeSimulator struct {
	client  kubernetes.Interface
	cluster string
	count   int
	version string
	cpu     resource.Quantity
	memory  resource.Quantity
	pods    resource.Quantity

	nodeLister corelisters.NodeLister
	podLister  corelisters.PodLister
	podIndexer cache.Indexer
	nodeQueue  workqueue.TypedRateLimitingInterface[string]
	podQueue   workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	lastPost map[string]time.Time // node name -> last status post
}

func newNodeSimulator(client kubernetes.Interface, cluster string, count int, version string, cpu, memory, pods string) (*nodeSimulator, error) {
	s := &nodeSimulator{client: client, cluster: cluster, count: count, version: version, lastPost: map[string]time.Time{}}
	var err error
	if s.cpu, err = resource.ParseQuantity(cpu); err != nil {
		return nil, fmt.Errorf("--node-cpu: %w", err)
	}
	if s.memory, err = resource.ParseQuantity(memory); err != nil {
		return nil, fmt.Errorf("--node-memory: %w", err)
	}
	if s.pods, err = resource.ParseQuantity(pods); err != nil {
		return nil, fmt.Errorf("--node-pods: %w", err)
	}
	return s, nil
}

func (s *nodeSimulator) nodeName(i int) string { return fmt.Sprintf("%s-node-%d", s.cluster, i) }

// nodeIndex returns i for a name made by nodeName, or -1.
func (s *nodeSimulator) nodeIndex(name string) int {
	rest, ok := strings.CutPrefix(name, s.cluster+"-node-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || strconv.Itoa(i) != rest {
		return -1
	}
	return i
}

func (s *nodeSimulator) ours(nodeName string) bool {
	i := s.nodeIndex(nodeName)
	return i >= 0 && i < s.count
}

// run starts the simulator; ready is closed once every node is registered.
func (s *nodeSimulator) run(ctx context.Context, ready chan<- struct{}) {
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = simulatedLabel + "=true" }))
	podFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	nodeInformer := nodeFactory.Core().V1().Nodes()
	podInformer := podFactory.Core().V1().Pods()
	s.nodeLister = nodeInformer.Lister()
	s.podLister = podInformer.Lister()
	s.podIndexer = podInformer.Informer().GetIndexer()
	if err := s.podIndexer.AddIndexers(cache.Indexers{"node": func(obj any) ([]string, error) {
		return []string{obj.(*corev1.Pod).Spec.NodeName}, nil
	}}); err != nil {
		logf("node simulator: %v", err)
	}
	s.nodeQueue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	s.podQueue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer s.nodeQueue.ShutDown()
	defer s.podQueue.ShutDown()

	_, _ = nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.enqueueNode(obj) },
		UpdateFunc: func(_, obj any) { s.enqueueNode(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s.enqueueNode(obj)
		},
	})
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.enqueuePod(obj) },
		UpdateFunc: func(_, obj any) { s.enqueuePod(obj) },
	})
	nodeFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	nodeFactory.WaitForCacheSync(ctx.Done())
	podFactory.WaitForCacheSync(ctx.Done())

	// Register the nodes and remove those beyond --nodes before anything else.
	for {
		err := s.reconcileNodes(ctx)
		if err == nil {
			break
		}
		logf("node simulator: %v", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	close(ready)

	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := s.reconcileNodes(ctx); err != nil {
			logf("node simulator: %v", err)
		}
	}, leaseRenewInterval)
	go s.worker(ctx, s.nodeQueue, s.syncNode)
	for range 2 {
		go s.worker(ctx, s.podQueue, s.syncPod)
	}
	<-ctx.Done()
}

func (s *nodeSimulator) enqueueNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok && s.ours(n.Name) {
		s.nodeQueue.Add(n.Name)
	}
}

func (s *nodeSimulator) enqueuePod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || !s.ours(p.Spec.NodeName) {
		return
	}
	key, _ := cache.MetaNamespaceKeyFunc(p)
	s.podQueue.Add(key)
}

func (s *nodeSimulator) worker(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		if err := sync(ctx, key); err != nil {
			if ctx.Err() == nil && !apierrors.IsConflict(err) {
				logf("node simulator: %s: %v", key, err)
			}
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

// reconcileNodes creates missing nodes, renews their leases, and deletes
// simulated nodes beyond the configured count together with their pods.
func (s *nodeSimulator) reconcileNodes(ctx context.Context) error {
	var errs []error
	for i := range s.count {
		name := s.nodeName(i)
		if _, err := s.nodeLister.Get(name); apierrors.IsNotFound(err) {
			if _, err := s.client.CoreV1().Nodes().Create(ctx, s.newNode(i), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("create node %s: %w", name, err))
				continue
			}
			logf("registered node %s", name)
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.syncNode(ctx, name); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("node %s status: %w", name, err))
		}
		if err := s.renewLease(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("node %s lease: %w", name, err))
		}
	}
	nodes, err := s.nodeLister.List(labels.Everything()) // the informer lists simulated nodes only
	if err != nil {
		return err
	}
	for _, n := range nodes {
		i := s.nodeIndex(n.Name)
		if i >= 0 && i < s.count {
			continue
		}
		if i < 0 {
			continue // another cluster name's node; leave it alone
		}
		if err := s.removeNode(ctx, n.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func (s *nodeSimulator) removeNode(ctx context.Context, name string) error {
	logf("removing node %s", name)
	pods, err := s.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", name).String()})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		s.forceDelete(ctx, &p)
	}
	err = s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err = s.client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (s *nodeSimulator) newNode(i int) *corev1.Node {
	name := s.nodeName(i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               runtime.GOARCH,
				"beta.kubernetes.io/os":            "linux",
				"beta.kubernetes.io/arch":          runtime.GOARCH,
				"node.kubernetes.io/instance-type": "localk8s",
				simulatedLabel:                     "true",
			},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:    s.podCIDR(i),
			PodCIDRs:   []string{s.podCIDR(i)},
			ProviderID: "localk8s://" + s.cluster + "/" + name,
		},
	}
}

func (s *nodeSimulator) podCIDR(i int) string { return fmt.Sprintf("%s%d.0/24", podCIDRPrefix, i%256) }

// readiness returns the Ready condition the node should report.
func readiness(n *corev1.Node) (corev1.ConditionStatus, string, string) {
	v, ok := n.Annotations[notReadyAnnotation]
	if !ok || v == "false" {
		return corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status (simulated by localk8s)"
	}
	reason := "KubeletNotReady"
	if v != "true" && v != "" {
		reason = v
	}
	return corev1.ConditionFalse, reason, "node marked not ready with the annotation " + notReadyAnnotation
}

func nodeReady(n *corev1.Node) bool {
	st, _, _ := readiness(n)
	return st == corev1.ConditionTrue
}

func (s *nodeSimulator) syncNode(ctx context.Context, name string) error {
	i := s.nodeIndex(name)
	if i < 0 || i >= s.count {
		return nil
	}
	n, err := s.nodeLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil // reconcileNodes re-registers it
	}
	if err != nil {
		return err
	}
	desired := n.DeepCopy()
	s.setNodeStatus(desired)
	changed := !conditionsEqual(n.Status.Conditions, desired.Status.Conditions) ||
		len(n.Status.Capacity) == 0 || n.Status.NodeInfo.KubeletVersion != s.version
	s.mu.Lock()
	stale := time.Since(s.lastPost[name]) >= statusInterval
	s.mu.Unlock()
	if !changed && !stale {
		return nil
	}
	now := metav1.Now()
	for j := range desired.Status.Conditions {
		desired.Status.Conditions[j].LastHeartbeatTime = now
	}
	if _, err := s.client.CoreV1().Nodes().UpdateStatus(ctx, desired, metav1.UpdateOptions{}); err != nil {
		return err
	}
	s.mu.Lock()
	s.lastPost[name] = time.Now()
	s.mu.Unlock()
	if changed {
		st, reason, _ := readiness(desired)
		if st == corev1.ConditionTrue {
			logf("node %s is Ready", name)
		} else {
			logf("node %s is NotReady (%s)", name, reason)
		}
		// Pods follow the node: back to ready when it recovers.
		objs, _ := s.podIndexer.ByIndex("node", name)
		for _, o := range objs {
			s.enqueuePod(o)
		}
	}
	return nil
}

func conditionsEqual(a, b []corev1.NodeCondition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason {
			return false
		}
	}
	return true
}

func (s *nodeSimulator) setNodeStatus(n *corev1.Node) {
	res := corev1.ResourceList{
		corev1.ResourceCPU:              s.cpu,
		corev1.ResourceMemory:           s.memory,
		corev1.ResourcePods:             s.pods,
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	n.Status.Capacity = res
	n.Status.Allocatable = res.DeepCopy()
	n.Status.Phase = ""
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: nodeHostIP},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	n.Status.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}}
	id := stableID(s.cluster + "/" + n.Name)
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               id,
		SystemUUID:              id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32],
		BootID:                  id,
		KernelVersion:           "simulated",
		OSImage:                 "localk8s simulated node",
		ContainerRuntimeVersion: "localk8s://" + s.version,
		KubeletVersion:          s.version,
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
	}
	st, reason, msg := readiness(n)
	old := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range n.Status.Conditions {
		old[c.Type] = c
	}
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		if o, ok := old[t]; ok && o.Status == st {
			c.LastTransitionTime = o.LastTransitionTime
			c.LastHeartbeatTime = o.LastHeartbeatTime
		}
		return c
	}
	n.Status.Conditions = []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		cond(corev1.NodeReady, st, reason, msg),
	}
}

func stableID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func (s *nodeSimulator) renewLease(ctx context.Context, name string) error {
	leases := s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err := s.nodeLister.Get(name)
		var owner []metav1.OwnerReference
		if err == nil {
			owner = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease, OwnerReferences: owner},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(name),
				LeaseDurationSeconds: ptr.To[int32](leaseDuration),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(name)
	l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDuration)
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// syncPod does for one pod what the kubelet of its node would do.
func (s *nodeSimulator) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := s.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !s.ours(pod.Spec.NodeName) {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		// The containers are gone at once; confirm the deletion.
		return s.confirmDeletion(ctx, pod)
	}
	node, err := s.nodeLister.Get(pod.Spec.NodeName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if !nodeReady(node) {
		return nil // a node that is not ready starts nothing
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	status, requeue := s.desiredPodStatus(pod)
	if status != nil {
		p := pod.DeepCopy()
		p.Status = *status
		if _, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if requeue > 0 {
		s.podQueue.AddAfter(key, requeue)
	}
	return nil
}

func (s *nodeSimulator) confirmDeletion(ctx context.Context, pod *corev1.Pod) error {
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func (s *nodeSimulator) forceDelete(ctx context.Context, pod *corev1.Pod) {
	_ = s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
}

// podIP picks the pod's address: its old one, the node's for host network
// pods, else the first free address of the node's pod CIDR.
func (s *nodeSimulator) podIP(pod *corev1.Pod) string {
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP
	}
	if pod.Spec.HostNetwork {
		return nodeHostIP
	}
	i := s.nodeIndex(pod.Spec.NodeName)
	used := map[string]bool{}
	objs, _ := s.podIndexer.ByIndex("node", pod.Spec.NodeName)
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.UID != pod.UID && p.Status.PodIP != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			used[p.Status.PodIP] = true
		}
	}
	for host := 2; host < 255; host++ {
		ip := fmt.Sprintf("%s%d.%d", podCIDRPrefix, i%256, host)
		if !used[ip] {
			return ip
		}
	}
	// More than 253 live pods on one node: share the last address.
	return fmt.Sprintf("%s%d.254", podCIDRPrefix, i%256)
}

// desiredPodStatus returns the status to write (nil when the current one is
// right) and when to look at the pod again.
func (s *nodeSimulator) desiredPodStatus(pod *corev1.Pod) (*corev1.PodStatus, time.Duration) {
	now := metav1.Now()
	st := pod.Status.DeepCopy()
	running := st.Phase == corev1.PodRunning && st.StartTime != nil
	restarted := pod.Spec.RestartPolicy == "" || pod.Spec.RestartPolicy == corev1.RestartPolicyAlways

	if running && !restarted && time.Since(st.StartTime.Time) >= completeAfter {
		return s.completedStatus(pod, st, now), 0
	}
	if running && allReady(st) {
		if !restarted {
			return nil, completeAfter - time.Since(st.StartTime.Time)
		}
		return nil, 0
	}

	ip := s.podIP(pod)
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.Phase = corev1.PodRunning
	st.HostIP = nodeHostIP
	st.HostIPs = []corev1.HostIP{{IP: nodeHostIP}}
	st.PodIP = ip
	st.PodIPs = []corev1.PodIP{{IP: ip}}
	if net.ParseIP(ip) == nil {
		st.PodIP, st.PodIPs = "", nil
	}
	st.QOSClass = qosClass(pod)
	st.ObservedGeneration = pod.Generation
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name),
		}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// A sidecar keeps running next to the app containers.
			cs.Ready, cs.Started = true, ptr.To(true)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: *st.StartTime}
		} else {
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
				StartedAt: *st.StartTime, FinishedAt: *st.StartTime, ContainerID: cs.ContainerID}
			cs.Started = ptr.To(false)
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name),
			Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *st.StartTime}},
		})
	}
	setPodConditions(st, corev1.ConditionTrue, now)
	var requeue time.Duration
	if !restarted {
		requeue = completeAfter
	}
	return st, requeue
}

func (s *nodeSimulator) completedStatus(pod *corev1.Pod, st *corev1.PodStatus, now metav1.Time) *corev1.PodStatus {
	code := int32(0)
	if v, ok := pod.Annotations[exitCodeAnnotation]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			code = int32(n)
		}
	}
	reason := "Completed"
	st.Phase = corev1.PodSucceeded
	if code != 0 {
		reason = "Error"
		st.Phase = corev1.PodFailed
	}
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}}
		cs.Ready = false
		cs.Started = ptr.To(false)
	}
	setPodConditions(st, corev1.ConditionFalse, now)
	st.ObservedGeneration = pod.Generation
	return st
}

func allReady(st *corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setPodConditions sets the conditions a kubelet maintains; ready applies to
// Ready and ContainersReady, the others are true once the pod started.
func setPodConditions(st *corev1.PodStatus, ready corev1.ConditionStatus, now metav1.Time) {
	want := []struct {
		t  corev1.PodConditionType
		st corev1.ConditionStatus
	}{
		{corev1.PodReadyToStartContainers, corev1.ConditionTrue},
		{corev1.PodInitialized, corev1.ConditionTrue},
		{corev1.ContainersReady, ready},
		{corev1.PodReady, ready},
		{corev1.PodScheduled, corev1.ConditionTrue},
	}
	if ready == corev1.ConditionFalse {
		want[0].st = corev1.ConditionFalse // sandbox gone after completion
	}
	for _, w := range want {
		found := false
		for i := range st.Conditions {
			c := &st.Conditions[i]
			if c.Type != w.t {
				continue
			}
			found = true
			if c.Status != w.st {
				c.Status, c.LastTransitionTime = w.st, now
				c.Reason, c.Message = "", ""
				if w.st == corev1.ConditionFalse && (w.t == corev1.PodReady || w.t == corev1.ContainersReady) {
					c.Reason = "PodCompleted"
				}
			}
		}
		if !found {
			st.Conditions = append(st.Conditions, corev1.PodCondition{Type: w.t, Status: w.st, LastTransitionTime: now})
		}
	}
}

func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests, limits := false, false
	guaranteed := true
	for _, c := range pod.Spec.Containers {
		if len(c.Resources.Requests) > 0 {
			requests = true
		}
		if len(c.Resources.Limits) > 0 {
			limits = true
		}
		cpuL, okC := c.Resources.Limits[corev1.ResourceCPU]
		memL, okM := c.Resources.Limits[corev1.ResourceMemory]
		if !okC || !okM {
			guaranteed = false
			continue
		}
		if r, ok := c.Resources.Requests[corev1.ResourceCPU]; ok && r.Cmp(cpuL) != 0 {
			guaranteed = false
		}
		if r, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && r.Cmp(memL) != 0 {
			guaranteed = false
		}
	}
	switch {
	case guaranteed && len(pod.Spec.Containers) > 0:
		return corev1.PodQOSGuaranteed
	case requests || limits:
		return corev1.PodQOSBurstable
	default:
		return corev1.PodQOSBestEffort
	}
}

func imageID(image string) string {
	return "localk8s://" + image + "@sha256:" + hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte(image)); return s[:] }())
}

func containerID(pod *corev1.Pod, name string) string {
	return "localk8s://" + stableID(string(pod.UID)+"/"+name)
}
