"""DICOM de-identification to PS3.15 Annex E (pydicom), built in the anonymizer issue.

Everything bound for the portal that can carry patient data passes through here first.
"""
