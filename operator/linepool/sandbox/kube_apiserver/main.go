// Command kube-apiserver is the genuine Kubernetes API server, built from the k8s.io/kubernetes
// module for the test suite (as controller-runtime's envtest does), so that the CRDs, the chart's
// RBAC and the operator meet a real server's validation and authorization.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
