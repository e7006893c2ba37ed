"""Network edges of the terminal channel: thin adapters feeding the sans-I/O codec.

asyncio_adapter.py  asyncio Protocol (production: on uvloop), callback-driven, no task per
                    connection or request
trio_adapter.py     the same codec and Switch.process over trio streams
"""
