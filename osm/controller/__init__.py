"""The control-plane process: the store, its HTTP API and (later) the xDS push loop."""
