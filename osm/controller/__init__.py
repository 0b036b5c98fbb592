"""The control-plane process: the store, its HTTP API, the CA and the xDS push loop."""
