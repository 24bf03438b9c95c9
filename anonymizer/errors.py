"""Every error the de-identifier raises on purpose.

    AnonymizerError             base of all of them
    +-- ProfileError            a bad option or a bad profile configuration (or damaged package data);
    |                           the message names the bad value and what is allowed
    +-- Refused                 a file or dataset that must not leave; `reason` says why, for the
    |                           quarantine record, the JSON report and stderr
    +-- KeyFileError            the site's pseudonym key cannot be read or created; the message names
                                the path and the fix

The anonymizer stands alone (it never imports `agent`), so it does not know exit codes: the CLI
maps ProfileError and KeyFileError to a usage error (exit 2) and counts Refused files (exit 3).
Refused is an expected outcome, not a failure of the program: a batch goes on after one.
"""

from __future__ import annotations


class AnonymizerError(Exception):
    """Base of every deliberate error of the anonymizer package."""


class ProfileError(AnonymizerError):
    """An option, a profile setting or the shipped table is not usable; the message says what is allowed."""


class Refused(AnonymizerError):
    """A file or dataset that must not leave the device, with the reason written for the reader."""

    def __init__(self, reason: str) -> None:
        # The reason is the only argument, so the exception pickles across worker processes (--jobs).
        super().__init__(reason)
        self.reason = reason


class KeyFileError(AnonymizerError):
    """The site's secret pseudonym key cannot be read or created; the message names the path and the fix."""
