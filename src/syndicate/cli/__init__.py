"""The ``syndicate`` command line."""
