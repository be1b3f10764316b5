"""The issuance ledger (issue 8): one record per signature the appliance hands out.

Records are written by the front, one transaction for every batch (several batches share one
when they finish together), before any of their results leave; a batch whose records cannot be
written is answered UNAVAILABLE and nothing of it is returned as signed. Each appliance keeps
its own hash chain (``[ledger] chain``): every record carries the hash of the one before, so an
edit, a deletion, an insertion or a reordering breaks the chain where it happened
(``signer audit verify``). Records hold no personal data: the revocation hashes stand in for it.
"""
