// Command fake-kubelet plays the kubelet for one lab node where there is no container runtime.
//
// It registers the Node (Ready, with capacity), renews its Lease, watches the Pods bound to it and runs
// every container's command+args with its env as a plain process (hostNetwork semantics: the process lives
// in the node's network namespace, either the one fake-kubelet runs in or --netns). For a Pod that mounts a
// ServiceAccount token it requests a bound token (TokenRequest API) and writes token, ca.crt and namespace
// into a per-pod directory; with --mount-sa (default) the process runs in a private mount namespace where
// that directory is bind-mounted over /var/run/secrets/kubernetes.io/serviceaccount, so in-cluster
// configuration (client-go rest.InClusterConfig, kube-rs Config::infer) works unchanged. secret, configMap,
// emptyDir and hostPath volumes are bind-mounted the same way (mount points missing on the host are created
// there, empty). The env always gets KUBERNETES_SERVICE_HOST/PORT pointing at the API server.
//
// A Pod without hostNetwork gets a network namespace of its own (--pod-netns-prefix + part of its UID, loopback
// only), so two replicas may listen on the same port as in a real cluster; fake-kubelet proxies the API server
// into it (a listener on KUBERNETES_SERVICE_HOST:PORT inside the pod's namespace, dialled out from the node's),
// runs its probes there, and deletes the namespace when the Pod stops.
//
// Pod status: Running once the processes are started; Ready from the readiness probe (HTTP GET, TCP or
// none). Deleting a Pod sends SIGTERM to the process group, SIGKILL after the grace period, then the Pod
// object is removed. Process output goes to <state-dir>/pods/<ns>_<name>/<container>.log (there is no
// `kubectl logs`: no kubelet server).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const saMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

type config struct {
	kubeconfig     string
	nodeName       string
	nodeIP         string
	netns          string
	stateDir       string
	pathPrepend    string
	apiHost        string
	apiPort        string
	mountSA        bool
	maxProbePeriod time.Duration
	cpu, memory    string
	pods           string
	podNetnsPrefix string
}

type kubelet struct {
	cfg    config
	client kubernetes.Interface
	caPEM  []byte

	mu      sync.Mutex
	running map[types.UID]*podRun
}

// podRun is one Pod's processes and probe state.
type podRun struct {
	pod    *corev1.Pod
	dir    string
	cancel context.CancelFunc
	ctrs   []*ctrRun
	done   chan struct{} // closed when every process has exited after stop
	netns  string        // the pod's own network namespace (no hostNetwork); empty: the node's
	proxy  net.Listener  // API server proxy inside netns

	failMu sync.Mutex
	failed string // non-empty: the pod could not be started ("Reason: message")
}

func (r *podRun) setFailed(s string) {
	r.failMu.Lock()
	r.failed = s
	r.failMu.Unlock()
}

func (r *podRun) failure() string {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	return r.failed
}

type ctrRun struct {
	spec     corev1.Container
	mu       sync.Mutex
	cmd      *exec.Cmd
	started  time.Time
	ready    bool
	restarts int32
	exitCode int32
	exited   bool
	lastTerm *corev1.ContainerStateTerminated
	stopping bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig with the node's credentials (system:node:<name>)")
	flag.StringVar(&cfg.nodeName, "node-name", "lab-node", "Node name")
	flag.StringVar(&cfg.nodeIP, "node-ip", "127.0.0.1", "Node InternalIP, also the hostNetwork Pod IP")
	flag.StringVar(&cfg.netns, "netns", "", "run containers (and probes) in this named network namespace (ip netns); empty: the current one")
	flag.StringVar(&cfg.stateDir, "state-dir", "/tmp/fake-kubelet", "per-pod directories (SA token, logs)")
	flag.StringVar(&cfg.pathPrepend, "path-prepend", "", "colon-separated directories put before $PATH for container commands")
	flag.StringVar(&cfg.apiHost, "api-host", "127.0.0.1", "KUBERNETES_SERVICE_HOST given to containers")
	flag.StringVar(&cfg.apiPort, "api-port", "6443", "KUBERNETES_SERVICE_PORT given to containers")
	flag.BoolVar(&cfg.mountSA, "mount-sa", true, "bind-mount the pod's volumes (SA token, secret, configMap, emptyDir, hostPath) at their mountPath in a private mount namespace")
	flag.DurationVar(&cfg.maxProbePeriod, "max-probe-period", 2*time.Second, "cap on readinessProbe.periodSeconds (tests want quick readiness)")
	flag.StringVar(&cfg.cpu, "cpu", "8", "Node cpu capacity")
	flag.StringVar(&cfg.memory, "memory", "16Gi", "Node memory capacity")
	flag.StringVar(&cfg.pods, "pods", "110", "Node pods capacity")
	flag.StringVar(&cfg.podNetnsPrefix, "pod-netns-prefix", "k8s-pod-", "name prefix of the network namespaces of Pods without hostNetwork")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("fake-kubelet: ")

	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	caPEM := restCfg.CAData
	if len(caPEM) == 0 && restCfg.CAFile != "" {
		if caPEM, err = os.ReadFile(restCfg.CAFile); err != nil {
			log.Fatalf("read CA: %v", err)
		}
	}
	restCfg.UserAgent = "fake-kubelet"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.stateDir, "pods"), 0o755); err != nil {
		log.Fatalf("state dir: %v", err)
	}
	if cfg.mountSA {
		// The mount point must exist on the host; it stays empty there (only private mount namespaces see tokens).
		if err := os.MkdirAll(saMountPath, 0o755); err != nil {
			log.Fatalf("mkdir %s: %v", saMountPath, err)
		}
	}
	k := &kubelet{cfg: cfg, client: client, caPEM: caPEM, running: map[types.UID]*podRun{}}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := k.registerNode(ctx); err != nil {
		log.Fatalf("register node: %v", err)
	}
	go k.heartbeat(ctx)
	k.watchPods(ctx)
	<-ctx.Done()
	log.Printf("shutting down: stopping all pods")
	k.mu.Lock()
	runs := make([]*podRun, 0, len(k.running))
	for _, r := range k.running {
		runs = append(runs, r)
	}
	k.mu.Unlock()
	for _, r := range runs {
		k.stopPod(r, 5)
	}
}

// ---- Node ----

func (k *kubelet) nodeStatus() corev1.NodeStatus {
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(k.cfg.cpu),
		corev1.ResourceMemory: resource.MustParse(k.cfg.memory),
		corev1.ResourcePods:   resource.MustParse(k.cfg.pods),
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: k.cfg.nodeIP},
			{Type: corev1.NodeHostName, Address: k.cfg.nodeName},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.37.2-fake", OperatingSystem: "linux", Architecture: runtime.GOARCH,
			ContainerRuntimeVersion: "fake://process",
		},
	}
}

func (k *kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.nodeName, Labels: map[string]string{
			"kubernetes.io/hostname": k.cfg.nodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
		}},
	}
	for {
		_, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		log.Printf("create node: %v (retrying)", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err := k.updateNodeStatus(ctx); err != nil {
		return err
	}
	log.Printf("node %s registered and Ready", k.cfg.nodeName)
	return nil
}

func (k *kubelet) updateNodeStatus(ctx context.Context) error {
	n, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status = k.nodeStatus()
	_, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

func (k *kubelet) heartbeat(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			log.Printf("lease: %v", err)
		}
		if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			log.Printf("node status: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (k *kubelet) renewLease(ctx context.Context) error {
	leases := k.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, k.cfg.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.nodeName},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(k.cfg.nodeName), LeaseDurationSeconds: ptr.To[int32](40),
				RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// ---- Pods ----

func (k *kubelet) watchPods(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.nodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { k.sync(ctx, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o interface{}) { k.sync(ctx, o.(*corev1.Pod)) },
		DeleteFunc: func(o interface{}) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				k.forget(p)
			}
		},
	})
	factory.Start(ctx.Done())
}

func (k *kubelet) sync(ctx context.Context, pod *corev1.Pod) {
	k.mu.Lock()
	r := k.running[pod.UID]
	if r == nil && pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		r = &podRun{pod: pod.DeepCopy(), done: make(chan struct{})}
		k.running[pod.UID] = r
		k.mu.Unlock()
		go k.runPod(ctx, r)
		return
	}
	k.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		grace := int64(30)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		if r != nil {
			go func() {
				k.stopPod(r, grace)
				k.finalizeDelete(pod)
			}()
		} else {
			go k.finalizeDelete(pod)
		}
	}
}

// forget handles a Pod removed from the API (force delete): make sure its processes are gone.
func (k *kubelet) forget(pod *corev1.Pod) {
	k.mu.Lock()
	r := k.running[pod.UID]
	k.mu.Unlock()
	if r != nil {
		go k.stopPod(r, 0)
	}
}

func (k *kubelet) finalizeDelete(pod *corev1.Pod) {
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.Printf("pod %s/%s: final delete: %v", pod.Namespace, pod.Name, err)
	}
}

func (k *kubelet) stopPod(r *podRun, grace int64) {
	k.mu.Lock()
	first := r.cancel != nil
	cancel := r.cancel
	r.cancel = nil
	k.mu.Unlock()
	if first {
		log.Printf("pod %s/%s: stopping (grace %ds)", r.pod.Namespace, r.pod.Name, grace)
		cancel()
		for _, c := range r.ctrs {
			c.mu.Lock()
			c.stopping = true
			if c.cmd != nil && c.cmd.Process != nil && !c.exited {
				_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
			}
			c.mu.Unlock()
		}
		deadline := time.Now().Add(time.Duration(grace) * time.Second)
		for time.Now().Before(deadline) && !r.allExited() {
			time.Sleep(100 * time.Millisecond)
		}
		for _, c := range r.ctrs {
			c.mu.Lock()
			if c.cmd != nil && c.cmd.Process != nil && !c.exited {
				log.Printf("pod %s/%s: %s did not stop in %ds: SIGKILL", r.pod.Namespace, r.pod.Name, c.spec.Name, grace)
				_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			}
			c.mu.Unlock()
		}
		for i := 0; i < 50 && !r.allExited(); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if r.proxy != nil {
			_ = r.proxy.Close()
		}
		if r.netns != "" {
			if out, err := exec.Command("ip", "netns", "del", r.netns).CombinedOutput(); err != nil {
				log.Printf("pod %s/%s: ip netns del %s: %v %s", r.pod.Namespace, r.pod.Name, r.netns, err, out)
			}
		}
		k.mu.Lock()
		delete(k.running, r.pod.UID)
		k.mu.Unlock()
		close(r.done)
		if r.dir != "" {
			_ = os.RemoveAll(filepath.Join(r.dir, "sa"))
			_ = os.RemoveAll(filepath.Join(r.dir, "volumes"))
		}
		log.Printf("pod %s/%s: stopped", r.pod.Namespace, r.pod.Name)
	} else {
		<-r.done
	}
}

func (r *podRun) allExited() bool {
	for _, c := range r.ctrs {
		c.mu.Lock()
		alive := c.cmd != nil && !c.exited
		c.mu.Unlock()
		if alive {
			return false
		}
	}
	return true
}

func (k *kubelet) runPod(parent context.Context, r *podRun) {
	ctx, cancel := context.WithCancel(parent)
	k.mu.Lock()
	r.cancel = cancel
	k.mu.Unlock()
	pod := r.pod
	r.dir = filepath.Join(k.cfg.stateDir, "pods", pod.Namespace+"_"+pod.Name)
	log.Printf("pod %s/%s: starting (uid %s)", pod.Namespace, pod.Name, pod.UID)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		r.setFailed("CreatePodDir: " + err.Error())
	}
	if len(pod.Spec.InitContainers) > 0 && r.failure() == "" {
		r.setFailed("InitContainersUnsupported: fake-kubelet does not run init containers")
	}
	for _, c := range pod.Spec.Containers {
		r.ctrs = append(r.ctrs, &ctrRun{spec: c})
	}
	if !pod.Spec.HostNetwork && r.failure() == "" {
		if err := k.setupPodNetwork(r); err != nil {
			r.setFailed("NetworkNotReady: " + err.Error())
		}
	}
	if r.failure() != "" {
		log.Printf("pod %s/%s: cannot start: %s", pod.Namespace, pod.Name, r.failure())
		k.reportStatus(ctx, r)
		return
	}
	// Volumes and env may wait on the API (a Secret created later; the Node authorizer's graph learning about
	// a new Pod's ServiceAccount): retry like the kubelet does, reporting the reason meanwhile.
	type prepared struct {
		env    []string
		mounts []string
	}
	var preps []prepared
	for attempt := 0; ; attempt++ {
		preps = preps[:0]
		err := func() error {
			volumes, err := k.prepareVolumes(ctx, pod, r.dir)
			if err != nil {
				return fmt.Errorf("VolumeError: %w", err)
			}
			for _, c := range r.ctrs {
				env, err := k.containerEnv(ctx, pod, c.spec)
				if err != nil {
					return fmt.Errorf("CreateContainerConfigError: %w", err)
				}
				var mounts []string
				for _, m := range c.spec.VolumeMounts {
					src, ok := volumes[m.Name]
					if !ok {
						return fmt.Errorf("VolumeError: no volume %s", m.Name)
					}
					mounts = append(mounts, filepath.Join(src, m.SubPath), m.MountPath)
				}
				preps = append(preps, prepared{env, mounts})
			}
			return nil
		}()
		if err == nil {
			r.setFailed("")
			break
		}
		if r.failure() != err.Error() {
			log.Printf("pod %s/%s: waiting: %v", pod.Namespace, pod.Name, err)
			r.setFailed(err.Error())
			_ = k.reportStatus(ctx, r)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt+1, 5)) * time.Second):
		}
	}
	for i, c := range r.ctrs {
		go k.superviseContainer(ctx, r, c, preps[i].env, preps[i].mounts)
		go k.probe(ctx, r, c)
	}
	// Status: report on every change, and at least every few seconds.
	var last string
	for {
		s := r.statusKey()
		if s != last {
			if err := k.reportStatus(ctx, r); err == nil {
				last = s
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (r *podRun) statusKey() string {
	var b strings.Builder
	b.WriteString(r.failure())
	for _, c := range r.ctrs {
		c.mu.Lock()
		fmt.Fprintf(&b, "%s:%v:%v:%d:%v;", c.spec.Name, c.cmd != nil && !c.exited, c.ready, c.restarts, c.started.UnixNano())
		c.mu.Unlock()
	}
	return b.String()
}

func (k *kubelet) writeServiceAccount(ctx context.Context, pod *corev1.Pod, dir string) error {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600 * 24),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": k.caPEM, "namespace": []byte(pod.Namespace)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prepareVolumes materialises the pod's volumes under dir/volumes and returns volume name -> host path. The
// ServiceAccount token volume (projected, with a serviceAccountToken source) becomes dir/sa.
func (k *kubelet) prepareVolumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, error) {
	out := map[string]string{}
	writeKeys := func(path string, data map[string][]byte, items []corev1.KeyToPath) error {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		if len(items) == 0 {
			for key := range data {
				items = append(items, corev1.KeyToPath{Key: key, Path: key})
			}
		}
		for _, it := range items {
			v, ok := data[it.Key]
			if !ok {
				return fmt.Errorf("key %s not found", it.Key)
			}
			f := filepath.Join(path, it.Path)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(f, v, 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	for _, v := range pod.Spec.Volumes {
		path := filepath.Join(dir, "volumes", v.Name)
		switch {
		case v.Projected != nil && hasTokenSource(v.Projected):
			path = filepath.Join(dir, "sa")
			if err := k.writeServiceAccount(ctx, pod, path); err != nil {
				return nil, fmt.Errorf("ServiceAccount token: %w", err)
			}
		case v.Secret != nil:
			sec, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				if v.Secret.Optional != nil && *v.Secret.Optional {
					sec = &corev1.Secret{}
				} else {
					return nil, fmt.Errorf("volume %s: %w", v.Name, err)
				}
			}
			if err := writeKeys(path, sec.Data, v.Secret.Items); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.ConfigMap != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
					cm = &corev1.ConfigMap{}
				} else {
					return nil, fmt.Errorf("volume %s: %w", v.Name, err)
				}
			}
			data := map[string][]byte{}
			for key, val := range cm.Data {
				data[key] = []byte(val)
			}
			for key, val := range cm.BinaryData {
				data[key] = val
			}
			if err := writeKeys(path, data, v.ConfigMap.Items); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.EmptyDir != nil:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return nil, err
			}
		case v.HostPath != nil:
			path = v.HostPath.Path
		default:
			return nil, fmt.Errorf("volume %s: only secret, configMap, emptyDir, hostPath and the ServiceAccount token are supported", v.Name)
		}
		out[v.Name] = path
	}
	return out, nil
}

func hasTokenSource(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand implements the $(VAR) references of command, args and env values (without $$ escaping).
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func (k *kubelet) containerEnv(ctx context.Context, pod *corev1.Pod, c corev1.Container) ([]string, error) {
	path := os.Getenv("PATH")
	if k.cfg.pathPrepend != "" {
		path = k.cfg.pathPrepend + ":" + path
	}
	vals := map[string]string{
		"PATH":                            path,
		"HOME":                            "/root",
		"HOSTNAME":                        k.cfg.nodeName,
		"KUBERNETES_SERVICE_HOST":         k.cfg.apiHost,
		"KUBERNETES_SERVICE_PORT":         k.cfg.apiPort,
		"KUBERNETES_SERVICE_PORT_HTTPS":   k.cfg.apiPort,
		"FAKE_KUBELET_SERVICEACCOUNT_DIR": saMountPath,
	}
	if !k.cfg.mountSA {
		vals["FAKE_KUBELET_SERVICEACCOUNT_DIR"] = filepath.Join(k.cfg.stateDir, "pods", pod.Namespace+"_"+pod.Name, "sa")
	}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expand(e.Value, vals)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = pod.Name
			case "metadata.namespace":
				v = pod.Namespace
			case "metadata.uid":
				v = string(pod.UID)
			case "spec.nodeName":
				v = pod.Spec.NodeName
			case "spec.serviceAccountName":
				v = pod.Spec.ServiceAccountName
			case "status.podIP", "status.hostIP":
				v = k.cfg.nodeIP
			default:
				return nil, fmt.Errorf("env %s: unsupported fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil || s.Data[ref.Key] == nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %s key %s: %v", e.Name, ref.Name, ref.Key, err)
			}
			v = string(s.Data[ref.Key])
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: configmap %s: %v", e.Name, ref.Name, err)
			}
			v = cm.Data[ref.Key]
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
		vals[e.Name] = v
	}
	out := make([]string, 0, len(vals))
	for name, v := range vals {
		out = append(out, name+"="+v)
	}
	return out, nil
}

// imageEntrypoint: the last path element of an image reference, without tag or digest.
func imageEntrypoint(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	name := image[strings.LastIndexByte(image, '/')+1:]
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	return name
}

// lookPath resolves a command like the container runtime would, with the container's PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			for _, d := range filepath.SplitList(e[5:]) {
				p := filepath.Join(d, name)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
					return p, nil
				}
			}
		}
	}
	return "", fmt.Errorf("executable %q not found in the container PATH", name)
}

// mountScript runs in the container's private mount namespace: bind-mount each "src dst" pair given before
// "--" (creating dst like a runtime would: a directory, or a file for a file source), then exec the command.
const mountScript = `while [ "$1" != -- ]; do
  if [ -d "$1" ]; then mkdir -p "$2"; else mkdir -p "$(dirname "$2")"; [ -e "$2" ] || : > "$2"; fi
  mount --bind "$1" "$2" || exit 127
  shift 2
done
shift
exec "$@"`

func (k *kubelet) superviseContainer(ctx context.Context, r *podRun, c *ctrRun, env []string, mounts []string) {
	backoff := time.Second
	for ctx.Err() == nil {
		envMap := map[string]string{}
		for _, e := range env {
			if i := strings.IndexByte(e, '='); i > 0 {
				envMap[e[:i]] = e[i+1:]
			}
		}
		argv := append([]string{}, c.spec.Command...)
		if len(argv) == 0 {
			// No runtime, so no image entrypoint: by convention the entrypoint is the binary named like the
			// image (ghcr.io/x/iotrelay-operator:0.1 -> iotrelay-operator), found on the container PATH.
			argv = []string{imageEntrypoint(c.spec.Image)}
		}
		argv = append(argv, c.spec.Args...)
		for i := range argv {
			argv[i] = expand(argv[i], envMap)
		}
		if argv[0] == "" {
			r.setFailed("NoCommand: container " + c.spec.Name + " has neither command nor image")
			return
		}
		bin, err := lookPath(argv[0], env)
		if err != nil {
			r.setFailed("ExecNotFound: " + err.Error())
			log.Printf("pod %s/%s: %s", r.pod.Namespace, r.pod.Name, r.failure())
			return
		}
		argv[0] = bin
		// Wrappers, outermost first: network namespace, then a private mount namespace with the SA token.
		var wrap []string
		if ns := k.netnsOf(r); ns != "" {
			wrap = append(wrap, "ip", "netns", "exec", ns)
		}
		if len(mounts) > 0 && k.cfg.mountSA {
			wrap = append(wrap, "unshare", "--mount", "--propagation", "private", "sh", "-c", mountScript, "sh")
			wrap = append(wrap, mounts...)
			wrap = append(wrap, "--")
		}
		full := append(wrap, argv...)
		logf, err := os.OpenFile(filepath.Join(r.dir, c.spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			r.setFailed("Log: " + err.Error())
			return
		}
		cmd := exec.Command(full[0], full[1:]...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if c.spec.WorkingDir != "" {
			cmd.Dir = c.spec.WorkingDir
		}
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			logf.Close()
			return
		}
		err = cmd.Start()
		if err == nil {
			c.cmd, c.started, c.exited, c.ready = cmd, time.Now(), false, false
		}
		c.mu.Unlock()
		if err != nil {
			logf.Close()
			r.setFailed("StartError: " + err.Error())
			return
		}
		log.Printf("pod %s/%s: container %s started, pid %d: %s", r.pod.Namespace, r.pod.Name, c.spec.Name, cmd.Process.Pid, strings.Join(argv, " "))
		started := time.Now()
		werr := cmd.Wait()
		logf.Close()
		code := int32(0)
		if werr != nil {
			code = 1
			if ee, ok := werr.(*exec.ExitError); ok {
				code = int32(ee.ExitCode())
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int32(ws.Signal()) // as a container runtime reports it
				}
			}
		}
		c.mu.Lock()
		c.exited, c.ready, c.exitCode = true, false, code
		c.lastTerm = &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error",
			StartedAt: metav1.NewTime(started), FinishedAt: metav1.Now()}
		if code == 0 {
			c.lastTerm.Reason = "Completed"
		}
		stopping := c.stopping
		c.mu.Unlock()
		log.Printf("pod %s/%s: container %s exited with %d", r.pod.Namespace, r.pod.Name, c.spec.Name, code)
		if stopping || ctx.Err() != nil {
			return
		}
		pol := r.pod.Spec.RestartPolicy
		if pol == corev1.RestartPolicyNever || (pol == corev1.RestartPolicyOnFailure && code == 0) {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 20*time.Second {
			backoff *= 2
		}
		c.mu.Lock()
		c.restarts++
		c.mu.Unlock()
	}
}

// ---- readiness ----

func (k *kubelet) probe(ctx context.Context, r *podRun, c *ctrRun) {
	p := c.spec.ReadinessProbe
	if p == nil {
		for ctx.Err() == nil {
			c.mu.Lock()
			c.ready = c.cmd != nil && !c.exited
			c.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		return
	}
	period := time.Duration(p.PeriodSeconds) * time.Second
	if period <= 0 {
		period = 10 * time.Second
	}
	if period > k.cfg.maxProbePeriod {
		period = k.cfg.maxProbePeriod
	}
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	failThreshold, okThreshold := p.FailureThreshold, p.SuccessThreshold
	if failThreshold <= 0 {
		failThreshold = 3
	}
	if okThreshold <= 0 {
		okThreshold = 1
	}
	var fails, oks int32
	for ctx.Err() == nil {
		c.mu.Lock()
		alive := c.cmd != nil && !c.exited
		since := c.started
		c.mu.Unlock()
		if alive && time.Since(since) >= time.Duration(p.InitialDelaySeconds)*time.Second {
			err := k.probeOnce(k.netnsOf(r), p, c.spec, timeout)
			c.mu.Lock()
			if err == nil {
				fails, oks = 0, oks+1
				if oks >= okThreshold {
					c.ready = true
				}
			} else {
				oks, fails = 0, fails+1
				if fails >= failThreshold || !c.ready {
					c.ready = false
				}
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(period):
		}
	}
}

func portOf(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// netnsOf: the network namespace r's processes and probes live in (empty: fake-kubelet's own).
func (k *kubelet) netnsOf(r *podRun) string {
	if r.netns != "" {
		return r.netns
	}
	return k.cfg.netns
}

// setupPodNetwork gives a Pod without hostNetwork its own network namespace (loopback up) with the API server
// reachable at KUBERNETES_SERVICE_HOST:PORT inside it through a proxy to the real one.
func (k *kubelet) setupPodNetwork(r *podRun) error {
	name := k.cfg.podNetnsPrefix + strings.ReplaceAll(string(r.pod.UID), "-", "")[:10]
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a crashed run
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v %s", name, err, out)
	}
	r.netns = name
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("lo up in %s: %v %s", name, err, out)
	}
	api := net.JoinHostPort(k.cfg.apiHost, k.cfg.apiPort)
	var ln net.Listener
	err := inNetns(name, func() error {
		var err error
		ln, err = net.Listen("tcp", api)
		return err
	})
	if err != nil {
		return fmt.Errorf("API server proxy in %s: %v", name, err)
	}
	r.proxy = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := k.dialIn(k.cfg.netns, "tcp", api, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				// Not tied to the pod's context: a stopping process still talks to the API server during its
				// grace period (e.g. the operator releasing its Lease). The process's exit closes its side.
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	log.Printf("pod %s/%s: network namespace %s", r.pod.Namespace, r.pod.Name, name)
	return nil
}

// inNetns runs f on a locked OS thread switched into the named network namespace (sockets f creates stay
// there). The thread is switched back before unlocking; if that fails it stays locked and the Go runtime
// discards it when the goroutine ends.
func inNetns(netns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// dialIn connects from the named network namespace (empty: fake-kubelet's own).
func (k *kubelet) dialIn(netns, network, addr string, timeout time.Duration) (net.Conn, error) {
	if netns == "" {
		return net.DialTimeout(network, addr, timeout)
	}
	var c net.Conn
	err := inNetns(netns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

func (k *kubelet) probeOnce(netns string, p *corev1.Probe, c corev1.Container, timeout time.Duration) error {
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := portOf(g.Port, c)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = k.cfg.nodeIP
		}
		if g.Scheme == corev1.URISchemeHTTPS {
			return fmt.Errorf("https probes are not supported")
		}
		conn, err := k.dialIn(netns, "tcp", net.JoinHostPort(host, strconv.Itoa(port)), timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		path := g.Path
		if path == "" {
			path = "/"
		}
		req, err := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(host, strconv.Itoa(port))+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/fake")
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		req.Close = true
		if err := req.Write(conn); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10240))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := portOf(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = k.cfg.nodeIP
		}
		conn, err := k.dialIn(netns, "tcp", net.JoinHostPort(host, strconv.Itoa(port)), timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		args := p.Exec.Command
		if len(args) == 0 {
			return fmt.Errorf("empty exec probe")
		}
		if netns != "" {
			args = append([]string{"ip", "netns", "exec", netns}, args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return exec.CommandContext(ctx, args[0], args[1:]...).Run()
	}
	return fmt.Errorf("unsupported probe")
}

// ---- status ----

func (k *kubelet) reportStatus(ctx context.Context, r *podRun) error {
	now := metav1.Now()
	st := corev1.PodStatus{
		HostIP: k.cfg.nodeIP, HostIPs: []corev1.HostIP{{IP: k.cfg.nodeIP}},
		PodIP: k.cfg.nodeIP, PodIPs: []corev1.PodIP{{IP: k.cfg.nodeIP}},
		QOSClass: corev1.PodQOSBestEffort,
	}
	allReady, allRunning, anyRunning := true, true, false
	for _, c := range r.ctrs {
		c.mu.Lock()
		cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: "fake://" + c.spec.Image,
			RestartCount: c.restarts, Ready: c.ready}
		running := c.cmd != nil && !c.exited
		switch {
		case running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.started)}
			cs.Started = ptr.To(true)
			cs.ContainerID = fmt.Sprintf("fake://%d", c.cmd.Process.Pid)
			anyRunning = true
		case c.exited && c.lastTerm != nil:
			cs.State.Terminated = c.lastTerm.DeepCopy()
			cs.Started = ptr.To(false)
		default:
			reason := "ContainerCreating"
			if r.failure() != "" {
				reason, _, _ = strings.Cut(r.failure(), ":")
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: r.failure()}
			cs.Started = ptr.To(false)
		}
		if c.lastTerm != nil && running {
			cs.LastTerminationState.Terminated = c.lastTerm.DeepCopy()
		}
		allReady = allReady && c.ready
		allRunning = allRunning && running
		c.mu.Unlock()
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	st.Phase = corev1.PodPending
	if anyRunning {
		st.Phase = corev1.PodRunning
		st.StartTime = &now
	}
	if !anyRunning && len(r.ctrs) > 0 {
		done, failed := true, false
		for _, c := range r.ctrs {
			c.mu.Lock()
			done = done && c.exited
			failed = failed || (c.exited && c.exitCode != 0)
			c.mu.Unlock()
		}
		pol := r.pod.Spec.RestartPolicy
		if done && pol == corev1.RestartPolicyNever || done && pol == corev1.RestartPolicyOnFailure && !failed {
			st.Phase = corev1.PodSucceeded
			if failed {
				st.Phase = corev1.PodFailed
			}
		}
	}
	b := func(v bool) corev1.ConditionStatus {
		if v {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	ready := allReady && allRunning
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: b(r.failure() == ""), LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: b(ready), LastTransitionTime: now},
		{Type: corev1.PodReady, Status: b(ready), LastTransitionTime: now},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	if !ready {
		st.Conditions[3].Reason = "ContainersNotReady"
		st.Conditions[2].Reason = "ContainersNotReady"
	}
	pods := k.client.CoreV1().Pods(r.pod.Namespace)
	cur, err := pods.Get(ctx, r.pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.UID != r.pod.UID {
		return fmt.Errorf("pod replaced")
	}
	// Keep transition times stable when a condition's status did not change.
	for i := range st.Conditions {
		for _, old := range cur.Status.Conditions {
			if old.Type == st.Conditions[i].Type && old.Status == st.Conditions[i].Status {
				st.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	if cur.Status.StartTime != nil {
		st.StartTime = cur.Status.StartTime
	}
	if cur.Status.QOSClass != "" {
		st.QOSClass = cur.Status.QOSClass // set by the API server at creation, immutable
	}
	cur.Status = st
	_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil && ctx.Err() == nil {
		log.Printf("pod %s/%s: status: %v", r.pod.Namespace, r.pod.Name, err)
	}
	return err
}
