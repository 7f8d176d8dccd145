"""What tests/test_docs_commands.py runs the docs' commands with: the commands, found in the
docs (``commands``), and a fresh install and a shell to run them in (``shell``)."""
