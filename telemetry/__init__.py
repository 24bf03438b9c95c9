"""Telemetry: collectors (psutil), log scrubbing, thresholds, the SQLite outbox and the shipper.

Built in the telemetry issue. No patient data is ever part of it.
"""
