"""Pure planning: desired state + observed state -> actions. Imports nothing from aws/ or kube/."""
