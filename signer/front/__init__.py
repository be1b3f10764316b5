"""The front process: owns the gRPC port; TLS and client identity live in ``tls``."""
