"""Checks of what operators deploy: the image, the manifests, Prometheus and Grafana files."""
