// Command kubelet_check loads each kubelet-config.yaml given as an argument the way the
// kubelet of the module it is built against does at start, and prints one line per file:
// "<file>: ok: ..." or "<file>: <stage>: <the kubelet's error>". The stages are the file
// loader (decoding and defaulting), the evictionHard defaults, the feature gates of the
// file, ValidateKubeletConfiguration and the eviction threshold parsing. It exits 1 when a
// file fails. tests/test_kubelet_accepts_config.py builds it against k8s.io/kubernetes
// v1.30.1 (the go.mod scripts/toolchain made for the kubelet).
package main

import (
	"fmt"
	"os"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	logsapi "k8s.io/component-base/logs/api/v1"
	metricsfeatures "k8s.io/component-base/metrics/features"
	_ "k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
)

func check(path string) (string, error) {
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, path)
	if err != nil {
		return "load", err
	}
	kc, err := loader.Load()
	if err != nil {
		return "load", err
	}
	// cmd/kubelet/app/server.go loadConfigFile: the defaults only when the file has none.
	if kc.EvictionHard == nil {
		kc.EvictionHard = eviction.DefaultEvictionHard
	}
	gates := utilfeature.DefaultFeatureGate.DeepCopy()
	if err := gates.SetFromMap(kc.FeatureGates); err != nil {
		return "feature gates", err
	}
	if err := validation.ValidateKubeletConfiguration(kc, gates); err != nil {
		return "validation", err
	}
	thresholds, err := eviction.ParseThresholdConfig(kc.EnforceNodeAllocatable, kc.EvictionHard, kc.EvictionSoft,
		kc.EvictionSoftGracePeriod, kc.EvictionMinimumReclaim)
	if err != nil {
		return "eviction", err
	}
	return fmt.Sprintf("ok: %d eviction thresholds, evictionHard %v", len(thresholds), kc.EvictionHard), nil
}

func main() {
	// The gates cmd/kubelet/app and pkg/kubelet/server add to pkg/features' own.
	if err := logsapi.AddFeatureGates(utilfeature.DefaultMutableFeatureGate); err != nil {
		panic(err)
	}
	if err := metricsfeatures.AddFeatureGates(utilfeature.DefaultMutableFeatureGate); err != nil {
		panic(err)
	}
	failed := false
	for _, path := range os.Args[1:] {
		stage, err := check(path)
		if err != nil {
			fmt.Printf("%s: %s: %v\n", path, stage, err)
			failed = true
			continue
		}
		fmt.Printf("%s: %s\n", path, stage)
	}
	if failed {
		os.Exit(1)
	}
}
