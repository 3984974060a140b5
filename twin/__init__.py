"""The cluster twin: a local EKS API (moto) and a Kubernetes API server with controllers, over HTTP."""
