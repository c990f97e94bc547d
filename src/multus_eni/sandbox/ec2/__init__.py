"""The EC2 emulator: moto's EC2 in server mode on 127.0.0.1, made to follow EC2's rules.

Design: moto's `ThreadedMotoServer` app runs in this process on 127.0.0.1:<free port>, and the
fidelity layer patches moto's EC2 backend models in-process (moto 5.2.5, pinned) by wrapping their
methods, so every rule holds for every caller. A proxy in front was the alternative; it would have
to re-implement moto's state (who holds which address, which device index is taken) to judge a
request, while a wrapper reads it straight from moto's models.

Where moto is more permissive than EC2, the layer makes it behave as EC2 documents, with EC2's
error codes (each rule is a small named function citing the AWS page it follows):

- rules_attach: one attachment per ENI, one ENI per device index, same AZ only, the instance
  type's MaximumNetworkInterfaces, no detaching the primary ENI;
- rules_addresses: AWS's five reserved addresses per subnet, fixed addresses in range and unused,
  no taking another ENI's address without AllowReassignment, automatic addresses outside subnet
  CIDR reservations, Ipv4/Ipv6AddressesPerInterface of the instance type, subnet exhaustion;
- lifecycle: attaching -> attached and detaching -> detached after configurable delays, no delete
  while in use, termination honouring DeleteOnTermination, DeleteOnTermination settable through
  ModifyNetworkInterfaceAttribute;
- idempotency: ClientToken on CreateNetworkInterface;
- throttle: AWS's per-API token buckets answering `RequestLimitExceeded` (HTTP 503), off by default;
- faults: seeded 500/503 answers, added latency, NotFound right after create, off by default;
- control: `GET/POST {endpoint}/_fidelity/config`, `GET {endpoint}/_fidelity/calls` and
  `/_fidelity/throttled` (per-operation counts, `?reset=1` or DELETE to reset) for tests and
  benchmarks in other processes.

Every EC2 request runs under one process-wide model lock (runtime.MODEL_LOCK); delayed
transitions run on one scheduler thread and attachment events are delivered on one event thread.

Only one emulator per process: moto's backend is global (see `EC2Emulator`).
"""

from multus_eni.sandbox.ec2.emulator import EC2Emulator
from multus_eni.sandbox.ec2.events import AttachmentEvent

__all__ = ["AttachmentEvent", "EC2Emulator"]
