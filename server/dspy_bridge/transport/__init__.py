"""The gRPC edge of the bridge: proto <-> domain conversion, servicers and status mapping."""
