"""Installer for site IT (`servicegate-install`): offline bundle, users, directories, units, enrollment.

Built in the installer issue.
"""
