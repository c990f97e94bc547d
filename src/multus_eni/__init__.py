"""multus-eni: ENIs and IP addresses for Multus CNI on Amazon EKS."""

__version__ = "0.1.0"
