"""Holders' personal data: sealed at rest, masked on the way out, every read recorded.

seal.py      AES-256-GCM sealing with the key store's personal-data keys
masking.py   masked forms of names, ID numbers, contacts; the logging guard
holders.py   the holder registry: personal data by holder token (embedded file)
purposes.py  why staff may read personal data, and who may see it unmasked
records.py   the journal record of every personal-data read
audit.py     the reads by holder, rebuilt from the journal: "who looked at my data"
"""
