"""The card lifecycle (regulation art. 5, 6, 17; facts.md): application, issuance,
activation, loss reports, lifting, replacement, cancellation, suspension.

machine.py   the state machine, as a table of data: stage -> command -> next stage
records.py   its journal records (a lifecycle step, PINs, bank function, settlements)
pins.py      PIN rules and salted, peppered scrypt hashes
state.py     what the engine keeps beyond a card's status, rebuilt from the journal
commands.py  a request from the service desk -> the records that carry it out

Sans-I/O throughout: commands take the time and the state and return records; the service
API submits them with Switch.submit, so the authorisation caches and the deny-list change in
the same batch as the journal append.
"""
