// Command shipway-kube is the Kubernetes control plane Shipway's tests start on 127.0.0.1:
// the first argument names the component, the rest are that component's own flags.
//
//	shipway-kube etcd --data-dir ... --listen-client-urls http://127.0.0.1:2379 ...
//	shipway-kube kube-apiserver --etcd-servers http://127.0.0.1:2379 ...
//	shipway-kube kube-controller-manager --kubeconfig ...
//	shipway-kube kube-scheduler --kubeconfig ...
//
// One binary instead of four: the components share most of their packages, so one link step
// replaces four and the cold build is several minutes shorter.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: shipway-kube etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]")
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	os.Args = append([]string{component}, args...)
	switch component {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	default:
		fmt.Fprintf(os.Stderr, "shipway-kube: unknown component %q (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)\n", component)
		os.Exit(2)
	}
}
