"""The one Kubernetes client of the project (lightkube), for every process that reads or
writes the API: the controller, the local kubelet and the CLI, in both modes."""
