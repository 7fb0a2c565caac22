// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3), built at the version
// k8s.io/kubernetes itself requires. Debian's etcd-server 3.4 is older than the 3.5+ the
// apiserver supports, so the e2e builds its own.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
