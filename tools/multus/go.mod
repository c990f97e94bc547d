// Wrapper module: builds the Multus thin plugin at the pinned release.
module multus-eni.local/tools/multus

go 1.24.0

require gopkg.in/k8snetworkplumbingwg/multus-cni.v4 v4.2.3
