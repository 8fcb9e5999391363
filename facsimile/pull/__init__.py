"""Pull: hosts that come and go fetch their own files from a store.

``publish`` (on the machine that builds) writes an instance's build to any
fsspec URL as content-addressed, signed bundles (:mod:`.bundle` is the
format, :mod:`.sign` the Ed25519 signatures, :mod:`.store` the URL); ``pull``
(on each host) verifies and applies one, with only facsimile's core modules
(:mod:`.local`: its record, lock and staged writes). Secrets travel only as
age ciphertext to the target's recipients or the host's own ssh key.
"""
