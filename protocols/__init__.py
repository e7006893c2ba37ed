"""Sans-I/O protocol codecs for onecard: bytes in, events out; events in, bytes out.

Nothing in this package touches sockets, files, clocks or event loops.
"""
