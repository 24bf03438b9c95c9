"""Reference implementation of the vendor portal and the simulated modality, for tests and demos.

Not part of the device install; the agent never imports it. Built in the connection issues.
"""
