"""One module per ``litcpt`` command: its typed signature (the CLI and the recipe schema) and its docstring, and one
call into a package below. Commands never import each other."""
