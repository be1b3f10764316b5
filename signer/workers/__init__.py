"""Signing workers: separate processes, each with its own PKCS#11 login and session and exactly
one thread that talks to the HSM (docs/adr/0001-front-process-and-signing-workers.md).

The front process starts them (``python -m signer.workers``) and hands them chunks of batches
over a unix socket; :mod:`signer.workers.wire` is the framing both sides speak.
"""
