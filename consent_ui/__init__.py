"""Consent UI (PySide6): access dialog, session-ID entry with the privacy disclaimer, banner, tray.

Built in the consent-UI issues. It holds no authority: it talks to the agent only through
`agent.client` and `agent.protocol`.
"""
