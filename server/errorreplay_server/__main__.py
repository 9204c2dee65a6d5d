import sys

from errorreplay_server.cli import main

sys.exit(main())
