"""The ``litcpt`` entry point: the command registry, each command's jsonargparse parser, one-line errors and the
fast ``--help``. Commands are loaded by name from the registry (:mod:`litcpt.cli.parser`), never imported here."""
