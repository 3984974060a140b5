"""The parts of the twin's Kubernetes API server: routing, discovery, tables, patching."""
