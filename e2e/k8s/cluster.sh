#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the e2e: control plane, kubelet, kube-proxy, containerd + runc, CNI.
# Binaries: e2e/tools/build.sh (control plane, kubelet, kube-proxy, crictl, pause) and Debian's containerd, runc
# and containernetworking-plugins (scripts/node-deps.sh).
#
#   netns $K8S_NETNS (default k8s-node) = the node; node0 (veth) has the node IP $K8S_NODE_IP (192.0.2.250)
#   +-----------------------------------------------------------------------------------------------------+
#   | etcd 127.0.0.1:2379 <- kube-apiserver :6443 (TLS, Node,RBAC; advertises the node IP: the `kubernetes`  |
#   |                          Service 100.97.0.1:443 -> 192.0.2.250:6443), controller-manager, scheduler      |
#   | kubelet (system:node:$K8S_NODE, :10250 on the node IP, cgroupfs under /<state dir name>)                   |
#   |   -> containerd ($K8S_STATE/containerd.sock, own root/state) -> runc; pause image made locally          |
#   | kube-proxy (iptables mode: Service IPs for pods and for the node itself)                                  |
#   | CNI bridge cni0 100.96.0.1/24 -> pods in their own netns (100.96.0.x); hostNetwork pods share the node's |
#   +-----------------------------------------------------------------------------------------------------+
#   kubelet and containerd share one private mount namespace ($K8S_STATE/ns/node-mnt): their mounts (volumes,
#   container root filesystems, pod netns) never show on the host and go away with it. There, the three kernel
#   sysctls the kubelet would set host-wide (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) read as
#   the values it wants, so it leaves the host's alone. Host side: kubectl/helm/crictl/ctr wrappers in
#   $K8S_STATE/bin (`eval "$(cluster.sh env)"`).
#
# Usage: e2e/k8s/cluster.sh start|stop|env|status|load IMAGE.tar|pid CONTAINER-ID
#   load: import an OCI layout tar (e2e/k8s/image.py) into the node's containerd (k8s.io namespace)
#   pid:  host PID of a container's process (CONTAINER-ID as in a Pod's status, containerd://...)
# Env: K8S_STATE (default /tmp/k8s-iotrelay), K8S_NETNS, K8S_NODE (default lab-node), K8S_NODE_IP,
#      IOTRELAY_CACHE (binaries in $IOTRELAY_CACHE/bin), K8S_KEEP_STATE=1 (stop keeps the state dir: logs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
: "${K8S_STATE:=/tmp/k8s-iotrelay}"
: "${K8S_NETNS:=k8s-node}"
: "${K8S_NODE:=lab-node}"
: "${K8S_NODE_IP:=192.0.2.250}"
bin="$IOTRELAY_CACHE/bin"
pki="$K8S_STATE/pki"
api=https://127.0.0.1:6443
pod_cidr=100.96.0.0/24
svc_cidr=100.97.0.0/24
svc_api_ip=100.97.0.1
sock="$K8S_STATE/containerd.sock"
mntns="$K8S_STATE/ns/node-mnt"
cgroot=$(basename "$K8S_STATE")   # cgroups and the CNI network are named after the state dir
pause_image=iotrelay.local/pause:e2e
# kubelet sets these host-wide unless they already have its values (setupKernelTunables).
declare -A kubelet_sysctls=([vm/overcommit_memory]=1 [kernel/panic]=10 [kernel/panic_on_oops]=1)

log() { echo "cluster: $*" >&2; }
in_ns() { ip netns exec "$K8S_NETNS" "$@"; }
# (the real ctr, also when $K8S_STATE/bin, whose ctr wrapper calls this one, is on PATH)
real_ctr=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v ctr || echo ctr)
ctr_() { "$real_ctr" --address "$sock" -n k8s.io "$@"; }

gen_pki() {
  mkdir -p "$pki"
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=iotrelay-e2e-ca 2>/dev/null
  # name, subject, extensions
  cert() {
    local name=$1 subj=$2 ext=$3
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$ext" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 2 \
      -extfile "$name.ext" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$K8S_NODE_IP,IP:$svc_api_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert kubelet "/CN=$K8S_NODE" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$K8S_NODE_IP,DNS:$K8S_NODE"
  local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  cert admin "/O=system:masters/CN=kubernetes-admin" "$client"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  cert controller-manager /CN=system:kube-controller-manager "$client"
  cert scheduler /CN=system:kube-scheduler "$client"
  cert node "/O=system:nodes/CN=system:node:$K8S_NODE" "$client"
  cert kube-proxy /CN=system:kube-proxy "$client"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  for who in admin controller-manager scheduler node kube-proxy; do
    cat > "$K8S_STATE/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: $api, certificate-authority: $pki/ca.crt}
users:
- name: $who
  user: {client-certificate: $pki/$who.crt, client-key: $pki/$who.key}
contexts:
- name: e2e
  context: {cluster: e2e, user: $who}
current-context: e2e
EOF
  done
  cd - >/dev/null
}

# spawn NAME ns|node CMD...: runs CMD detached in the node's network namespace (ns) or in its network and mount
# namespaces (node), logging to logs/NAME.log.
spawn() {
  local name=$1 where=$2
  shift 2
  case "$where" in
    ns) set -- ip netns exec "$K8S_NETNS" "$@" ;;
    node) set -- nsenter --net="/run/netns/$K8S_NETNS" --mount="$mntns" "$@" ;;
  esac
  setsid "$@" > "$K8S_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$K8S_STATE/pids/$name"
}

wait_for() { # what timeout cmd...
  local what=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - start)) s"
}

alive() { kill -0 "$(cat "$K8S_STATE/pids/$1")" 2>/dev/null; }

# The cgroup v1 hierarchies (or the v2 root) the node's pods live under, as /sys/fs/cgroup/<h>/$cgroot.
cgroup_dirs() {
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo "/sys/fs/cgroup/$cgroot"; return; fi
  local d
  for d in /sys/fs/cgroup/*/; do
    [ -e "$d/cgroup.procs" ] && echo "${d%/}/$cgroot"
  done
  return 0
}

make_cgroups() {
  local d
  for d in $(cgroup_dirs); do
    mkdir -p "$d"
    # A new v1 cpuset starts with no CPUs or memory nodes.
    if [ -e "$d/cpuset.cpus" ] && [ -z "$(cat "$d/cpuset.cpus")" ]; then
      cat "$(dirname "$d")/cpuset.cpus" > "$d/cpuset.cpus"
      cat "$(dirname "$d")/cpuset.mems" > "$d/cpuset.mems"
    fi
  done
}

# The node's private mount namespace, persisted on a file so every node process can enter it.
make_mntns() {
  mkdir -p "$K8S_STATE/ns" "$K8S_STATE/netns" "$K8S_STATE/container-logs" "$K8S_STATE/sysctl"
  # (a file can only hold a mount namespace on a private mount)
  mount --bind "$K8S_STATE/ns" "$K8S_STATE/ns"
  mount --make-private "$K8S_STATE/ns"
  touch "$mntns"
  local k binds=""
  for k in "${!kubelet_sysctls[@]}"; do
    if [ "$(cat "/proc/sys/$k")" != "${kubelet_sysctls[$k]}" ]; then
      echo "${kubelet_sysctls[$k]}" > "$K8S_STATE/sysctl/${k//\//.}"
      binds+="mount --bind $K8S_STATE/sysctl/${k//\//.} /proc/sys/$k; "
    fi
  done
  # /var/log/containers (kubelet's symlinks) and /run/netns (containerd's pod netns) are fixed paths: private
  # copies here.
  [ -d /var/log/containers ] || { mkdir -p /var/log/containers; touch "$K8S_STATE/created-var-log-containers"; }
  mkdir -p /run/netns
  unshare --mount="$mntns" --propagation private sh -ec "$binds
    mount --bind $K8S_STATE/container-logs /var/log/containers
    mount --bind $K8S_STATE/netns /run/netns"
}

write_configs() {
  mkdir -p "$K8S_STATE/cni/net.d"
  cat > "$K8S_STATE/cni/net.d/10-$cgroot.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$cgroot",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$K8S_STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat > "$K8S_STATE/containerd.toml" <<EOF
version = 2
root = "$K8S_STATE/containerd/root"
state = "$K8S_STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$K8S_STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # The machine's bounding set may lack CAP_SYS_RESOURCE: never lower a process's oom_score_adj below ours.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$K8S_STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_STATE/cni/net.d"
    max_conf_num = 1
EOF
  cat > "$K8S_STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$sock
# The lab machines have cgroup v1 only; the driver is cgroupfs (no systemd as PID 1), under our own root.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroot
failSwapOn: false
address: $K8S_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $K8S_STATE/pod-logs
staticPodPath: ""
resolvConf: /etc/resolv.conf
# The e2e's shared machine: only evict when really out of resources, never garbage-collect the local images.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 20
serializeImagePulls: false
EOF
  cat > "$K8S_STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $K8S_STATE/kube-proxy.kubeconfig}
hostnameOverride: $K8S_NODE
mode: iptables
clusterCIDR: $pod_cidr
bindAddress: $K8S_NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the (partly host-wide) conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

start() {
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm kubelet kube-proxy pause; do
    [ -x "$bin/$b" ] || { log "missing $bin/$b: run scripts/node-deps.sh (and e2e/tools/build.sh)"; exit 1; }
  done
  for b in containerd ctr runc /usr/lib/cni/bridge; do
    command -v "$b" >/dev/null || { log "missing $b: run scripts/node-deps.sh"; exit 1; }
  done
  if [ -d "$K8S_STATE/pids" ] && ls "$K8S_STATE/pids"/* >/dev/null 2>&1; then
    log "a cluster seems to be running (state in $K8S_STATE): stop it first"
    exit 1
  fi
  local t0=$SECONDS
  rm -rf "$K8S_STATE"
  # A failed start leaves nothing running; the logs stay in $K8S_STATE.
  trap 'log "start failed; logs in $K8S_STATE/logs"; K8S_KEEP_STATE=1 stop' ERR
  mkdir -p "$K8S_STATE"/{logs,pids,bin,etcd,kubelet,images}
  if ! grep -qw "^$K8S_NETNS" <<< "$(ip netns list)"; then
    ip netns add "$K8S_NETNS"
    touch "$K8S_STATE/created-netns"
  fi
  ip -n "$K8S_NETNS" link set lo up
  # (a veth pair with both ends here: the dummy driver is not available everywhere)
  ip -n "$K8S_NETNS" link add node0 type veth peer name node0-peer
  ip -n "$K8S_NETNS" addr add "$K8S_NODE_IP/32" dev node0
  ip -n "$K8S_NETNS" link set node0-peer up
  ip -n "$K8S_NETNS" link set node0 up
  # Service IPs are routed somewhere (here), so the node's own processes (hostNetwork pods) can connect to them
  # at all; kube-proxy's DNAT then sends them to the endpoints.
  ip -n "$K8S_NETNS" route add "$svc_cidr" dev node0
  in_ns sysctl -qw net.ipv4.ip_forward=1
  gen_pki
  make_cgroups
  make_mntns
  write_configs

  # Wrappers so that host-side commands reach the node.
  for b in kubectl helm kstatus; do
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$K8S_NETNS" "$bin/$b" > "$K8S_STATE/bin/$b"
  done
  printf '#!/bin/sh\nexec %s --runtime-endpoint unix://%s --image-endpoint unix://%s "$@"\n' "$bin/crictl" "$sock" "$sock" \
    > "$K8S_STATE/bin/crictl"
  printf '#!/bin/sh\nexec %s --address %s -n k8s.io "$@"\n' "$real_ctr" "$sock" > "$K8S_STATE/bin/ctr"
  chmod +x "$K8S_STATE"/bin/*

  spawn etcd ns "$bin/etcd" --name e2e --data-dir "$K8S_STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --quota-backend-bytes 1073741824
  # containerd meanwhile (it does not need the API server).
  spawn containerd node containerd --config "$K8S_STATE/containerd.toml"
  wait_for "etcd healthy" 60 in_ns curl -sf http://127.0.0.1:2381/health

  spawn kube-apiserver ns "$bin/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --advertise-address "$K8S_NODE_IP" --secure-port 6443 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-cluster-ip-range "$svc_cidr" --allow-privileged=true --profiling=false
  wait_for "containerd" 60 ctr_ version
  python3 "$here/image.py" --out "$K8S_STATE/images/pause.tar" --name "$pause_image" \
    --file "$bin/pause:/pause" --entrypoint /pause --user 65535:65535 >/dev/null
  load "$K8S_STATE/images/pause.tar"
  wait_for "kube-apiserver ready" 120 in_ns curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "$api/readyz"

  spawn kube-controller-manager ns "$bin/kube-controller-manager" \
    --kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true --controllers '*,-node-ipam-controller' \
    --cert-dir "$K8S_STATE/kcm-certs"
  spawn kube-scheduler ns "$bin/kube-scheduler" \
    --kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --cert-dir "$K8S_STATE/scheduler-certs"
  spawn kubelet node "$bin/kubelet" --config "$K8S_STATE/kubelet.yaml" \
    --kubeconfig "$K8S_STATE/node.kubeconfig" --hostname-override "$K8S_NODE" --node-ip "$K8S_NODE_IP" \
    --root-dir "$K8S_STATE/kubelet" --cert-dir "$K8S_STATE/kubelet/pki"
  spawn kube-proxy ns "$bin/kube-proxy" --config "$K8S_STATE/kube-proxy.yaml"

  local k=("$bin/kubectl" --kubeconfig "$K8S_STATE/admin.kubeconfig")
  wait_for "node $K8S_NODE Ready" 90 in_ns "${k[@]}" wait --for=condition=Ready "node/$K8S_NODE" --timeout=1s
  wait_for "default ServiceAccount" 60 in_ns "${k[@]}" get serviceaccount default -n default
  for p in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    alive "$p" || { log "$p died"; tail -20 "$K8S_STATE/logs/$p.log" >&2; false; }
  done
  trap - ERR
  log "up in $((SECONDS - t0)) s; use: eval \"\$($0 env)\""
}

load() {
  [ -f "${1:-}" ] || { log "load: no image tar '${1:-}'"; return 1; }
  ctr_ images import --no-unpack=false "$1" >/dev/null
}

# Host PID of a container (containerd://<id>, as in the Pod's containerStatuses).
pid() {
  local id=${1#containerd://}
  ctr_ task ls 2>/dev/null | awk -v id="$id" '$1 == id {print $2}'
}

term() { # pid-file: SIGTERM, up to 10 s, then SIGKILL
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# PIDs of processes in the node's cgroups (containers, shims' children): only what this node started.
node_pids() {
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

stop() {
  [ -d "$K8S_STATE/pids" ] || { log "not running"; return 0; }
  # The kubelet first (so it restarts nothing), then every pod through the runtime (containers stopped, CNI torn
  # down), then containerd and its shims, then the rest; the control plane last.
  term "$K8S_STATE/pids/kubelet"
  # (the pod sandboxes' ids name containerd's CNI cache files in /var/lib/cni, a fixed path)
  local sandboxes=""
  [ -f "$K8S_STATE/pids/containerd" ] && alive containerd && sandboxes=$(ctr_ containers ls -q 2>/dev/null || true)
  if [ -f "$K8S_STATE/pids/containerd" ] && alive containerd && [ -x "$bin/crictl" ]; then
    timeout 60 "$bin/crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 20s \
      rmp --force --all >/dev/null 2>&1 || log "crictl rmp failed; killing what is left"
  fi
  term "$K8S_STATE/pids/containerd"
  local p pid
  # containerd's shims (started with our socket on their command line) outlive it.
  for p in /proc/[0-9]*; do
    if grep -q "containerd-shim.* -address $sock" <<< "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  for pid in $(node_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for p in kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do term "$K8S_STATE/pids/$p"; done
  # The mount namespace dies with its last process and its file: every volume, rootfs and pod netns with it.
  umount -l "$mntns" 2>/dev/null || true
  umount -l "$K8S_STATE/ns" 2>/dev/null || true
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d" ] || continue
    for _ in 1 2 3 4 5; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null && break; sleep 0.5; done
  done
  rm -f /var/lib/cni/results/"$cgroot"-* 2>/dev/null || true
  local id
  for id in $sandboxes; do rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null || true; done
  [ -f "$K8S_STATE/created-var-log-containers" ] && rmdir /var/log/containers 2>/dev/null
  if [ -f "$K8S_STATE/created-netns" ]; then
    ip netns del "$K8S_NETNS" 2>/dev/null || true
  elif [ -e "/run/netns/$K8S_NETNS" ]; then
    # Someone else's namespace (the lab's relay host): take back what the node added.
    ip -n "$K8S_NETNS" link del node0 2>/dev/null || true
    ip -n "$K8S_NETNS" link del cni0 2>/dev/null || true
    local t
    for t in filter nat mangle; do
      in_ns iptables-save -t "$t" 2>/dev/null | grep -vE 'KUBE-|CNI-' | in_ns iptables-restore -T "$t" 2>/dev/null || true
    done
  fi
  if [ "${K8S_KEEP_STATE:-0}" = 1 ]; then
    log "stopped; state kept in $K8S_STATE"
  else
    rm -rf "$K8S_STATE"
    log "stopped"
  fi
}

env_() {
  echo "export KUBECONFIG=$K8S_STATE/admin.kubeconfig"
  echo "export PATH=$K8S_STATE/bin:\$PATH"
  echo "export K8S_NETNS=$K8S_NETNS K8S_NODE=$K8S_NODE K8S_STATE=$K8S_STATE K8S_NODE_IP=$K8S_NODE_IP"
}

status() {
  for p in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    if [ -f "$K8S_STATE/pids/$p" ] && alive "$p"; then echo "$p: running"; else echo "$p: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  status) status ;;
  load) load "${2:-}" ;;
  pid) pid "${2:-}" ;;
  *) echo "usage: $0 start|stop|env|status|load IMAGE.tar|pid CONTAINER-ID" >&2; exit 2 ;;
esac
