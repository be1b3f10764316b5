"""The gRPC side: servicer, error interceptor, worker processes and their supervisor."""
