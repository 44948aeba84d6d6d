"""The ``rlft`` command (``rlft.cli.app``) and the tables it prints (``rlft.cli.tables``). ``python -m rlft.cli`` runs it."""
