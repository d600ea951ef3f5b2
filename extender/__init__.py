"""The kube-scheduler extender webhook, Kubernetes watch cache and binding."""
