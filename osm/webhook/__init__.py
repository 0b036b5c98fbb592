"""The admission webhooks a Kubernetes API server calls: AdmissionReview v1 over HTTPS.

One idea: the rules are the pure injector's and the model's (`osm.injector.admission`,
`osm.model.kinds`); this package only speaks the protocol around them and owns the I/O
they need: reading a Namespace and the MeshConfig, creating a bootstrap Secret, a serving
certificate from the mesh CA, the CA root kept in a Secret, and the webhook
configurations' caBundle.

Modules: `review` (AdmissionReview v1 in and out, pure), `server` (the HTTPS server, its
renewed certificate, health and metrics on plain HTTP), `injector` (``/mutate-pod-creation``),
`validator` (``/validate``), `certificates` (what the webhooks ask the mesh CA for),
`ca_secret` (the root in Secret ``osm-ca-bundle``), `cabundle` (the configurations'
caBundle), `run` (the processes' pieces). Import the submodules, not names from here.
"""
