"""Ray Serve deployments and gRPC servicers: thin adapters over the core library."""
