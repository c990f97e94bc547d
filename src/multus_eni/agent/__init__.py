"""Node agent: netlink, DPDK, SR-IOV config."""
