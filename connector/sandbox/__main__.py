"""``python -m connector.sandbox``: the sandbox gateway in the foreground."""

import sys

from connector.sandbox.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
