"""The DSPy runtime: signatures, LMs, module types and execution, independent of gRPC."""
