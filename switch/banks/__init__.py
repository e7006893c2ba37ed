"""The ISO 8583 channel and the switch's partner banks (docs/iso8583.md).

config.py     banks, card ranges, default route, stand-in, the ISO listener's port
records.py    journal records: payments, bank requests, store-and-forward, late replies
state.py      what replay rebuilds from them (holds, pending, queues, stand-in, bills)
routing.py    card → bank
core.py       the sans-I/O acquirer and bank state machine (time passed in)
link.py       a bank link: connect, sign on, echo, feed the core (anyio)
listener.py   the ISO 8583 listener for merchants and acquirers (anyio)
runtime.py    the task group that runs the listener, the links and the core's timers
simulator.py  a bank host speaking the same ISO 8583, for tests, the demo and the bench
"""
