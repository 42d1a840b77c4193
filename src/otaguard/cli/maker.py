"""The maker's commands: ``otaguard keys``, ``otaguard repo`` and ``otaguard release``.

Everything here runs on the maker's (offline) machine except ``repo publish`` and fetching the
server's online keys. The commands live in ``maker_keys``, ``maker_repo`` and
``maker_release``; importing this module registers them all on the three sub-apps.
"""

from otaguard.cli import maker_keys, maker_release, maker_repo
from otaguard.cli.maker_common import cli_errors, keys_app, release_app, repo_app

__all__ = [
    "cli_errors",
    "keys_app",
    "maker_keys",
    "maker_release",
    "maker_repo",
    "release_app",
    "repo_app",
]
