"""Application services: the bridge's behaviour, independent of gRPC. The transport converts
protos to calls on these and their results (or `BridgeError`s) back to protos."""
