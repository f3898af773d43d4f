"""The ``pellucid`` command line, thin over the API (needs the ``viz`` extra).

:mod:`~pellucid.cli.entry` builds the parser from :data:`COMMANDS` and maps every user
mistake (a bad argument, a :class:`UsageError`, a library
:class:`~pellucid.errors.PellucidError`, an exception inside the user's model) to one line
on stderr and exit status 2; :mod:`~pellucid.cli.command` defines both. One module per
subcommand (:mod:`~pellucid.cli.methods`, :mod:`~pellucid.cli.explain`,
:mod:`~pellucid.cli.demo`, :mod:`~pellucid.cli.evaluate`, :mod:`~pellucid.cli.run`) and the
helpers they share:
:mod:`~pellucid.cli.files`, :mod:`~pellucid.cli.model_loading`,
:mod:`~pellucid.cli.data_loading` and :mod:`~pellucid.cli.settings`.
"""

from .command import USAGE_ERROR, Command, UsageError
from .data_loading import image_paths
from .entry import COMMANDS, build_parser, main
from .model_loading import load_model
from .settings import parse_settings

__all__ = [
    "COMMANDS",
    "USAGE_ERROR",
    "Command",
    "UsageError",
    "build_parser",
    "image_paths",
    "load_model",
    "main",
    "parse_settings",
]
