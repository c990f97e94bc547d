"""The local world: real kube-apiserver + etcd, EC2 emulator with AWS's rules, node namespaces."""
