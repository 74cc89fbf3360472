"""``python -m connector``: the same as the ``taobao-connector`` command."""

import sys

from connector.service.cli import main

sys.exit(main())
