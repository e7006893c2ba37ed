"""The electronic social security card (电子社保卡): bindings, QR keys, scans, issuance.

records.py   journal records: QR key activation and retirement, e-card binding
config.py    what an operator may set: QR validity, clock skew, key retirement grace
keys.py      the QR verification keys by key id, with their activation and retirement
replay.py    the bounded store of used QR nonces (one-time use)
state.py     everything the engine keeps about e-cards, rebuilt from the journal
scan.py      the order of checks on a scanned QR code, ending in the card it stands for
issue.py     issuance: binding an e-card, minting a QR payload, planning a key rotation
admin.py     the same against a data directory, for the command line
image.py     rendering a payload as a QR image
cli.py       `onecard qr mint | image | rotate`

The QR payload itself (bytes, signature, validity) is sans-I/O in protocols.ecard.
This package module imports nothing, so journal records can import records.py alone.
"""
