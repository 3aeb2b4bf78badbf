"""The local platform: the Kubernetes topology of DESIGN.md, run as processes on one machine."""
