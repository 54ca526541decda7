"""`python -m celeris_asgi` runs the command line."""

from celeris_asgi.cli import main

main()
