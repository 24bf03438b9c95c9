"""ServiceGate agent: the only process with authority on the device.

It owns the access grant, the remote sessions, the tamper-evident audit log and the
local control API (a Unix socket). Qt and the reference portal are never imported here.
"""

__version__ = "0.1.0"
