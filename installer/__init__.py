"""Installer for site IT (`servicegate-install`): offline bundle, users, directories, units, enrollment.

Only the standard library, agent.config (to check the site file with the agent's own loader) and agent.fsutil
(its durable writes): the installer runs from the bundle's wheel on the system's python3 before anything is
installed, and asks the installed agent (`servicegate status --json`) for anything more. docs/deployment.md is
its manual.
"""
