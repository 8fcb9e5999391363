"""sshfs (and asyncssh under it), imported once for every SSH use: sync
destinations, remote state and ``facs pull`` over SFTP.

asyncssh names cryptography's DSA classes in its type hints, and cryptography
51 warns on every such use (``CryptographyDeprecationWarning: DSA is
deprecated``): ten lines on stderr at the start of each ``facs sync`` to an
SSH host, about something facsimile never uses (DSA keys are refused by
OpenSSH since 7.0). Those warnings, raised from asyncssh's own modules, are
ignored; any other warning is shown as before.
"""

from __future__ import annotations

import warnings
from typing import Any

warnings.filterwarnings("ignore", message="DSA is deprecated", module="asyncssh")


def ssh_filesystem() -> Any:
    """sshfs's ``SSHFileSystem`` class (ImportError when sshfs is not installed)."""
    from sshfs import SSHFileSystem

    return SSHFileSystem
