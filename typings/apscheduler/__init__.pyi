# Type stubs for the part of APScheduler 3.x that ServiceGate uses (APScheduler ships no types, and typeshed
# has none for it). Checked against apscheduler 3.11: only what telemetry/service.py and its tests call.
