"""The front process: owns the gRPC port; TLS, identity, policy, quotas, dispatch to workers."""
