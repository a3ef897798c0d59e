"""Deploy tests: the Helm chart, images, skaffold, dashboard and alerts."""
