// Pins the CustomResourceDefinitions the Kubernetes target's objects need (ServiceMonitor,
// PodMonitor, PrometheusRule from prometheus-operator; ExternalSecret/SecretStore from
// external-secrets). Nothing is built: the tests read the CRD YAML these module releases ship
// (`go mod download`, then `go list -m -f '{{.Dir}}'`), and install it into the test cluster.
module github.com/shipway/shipway/tools/crds

go 1.24

require (
	github.com/external-secrets/external-secrets v0.16.2
	github.com/prometheus-operator/prometheus-operator v0.86.1
)
