// Command kstatus prints the kstatus (sigs.k8s.io/cli-utils) of Kubernetes objects read as JSON from
// stdin, e.g. `kubectl get iotrelay plant-7 -o json | kstatus`. Output: `<Status> <message>`, one line per
// object (a List is expanded). Exit status 0 when every object is Current, 1 otherwise, 2 on bad input.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: read stdin:", err)
		os.Exit(2)
	}
	// apimachinery's json keeps integers as int64, as unstructured accessors expect.
	var obj map[string]interface{}
	if err := json.Unmarshal(data, &obj); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not a JSON object:", err)
		os.Exit(2)
	}
	u := &unstructured.Unstructured{Object: obj}
	var objs []unstructured.Unstructured
	if u.IsList() {
		list, err := u.ToList()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(2)
		}
		objs = list.Items
	} else {
		objs = []unstructured.Unstructured{*u}
	}
	allCurrent := true
	for i := range objs {
		res, err := status.Compute(&objs[i])
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s/%s: %v\n", objs[i].GetKind(), objs[i].GetName(), err)
			os.Exit(2)
		}
		if len(objs) > 1 {
			fmt.Printf("%s/%s ", objs[i].GetKind(), objs[i].GetName())
		}
		fmt.Printf("%s %s\n", res.Status, res.Message)
		if res.Status != status.CurrentStatus {
			allCurrent = false
		}
	}
	if !allCurrent {
		os.Exit(1)
	}
}
