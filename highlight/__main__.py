import sys

from highlight.cli import main

sys.exit(main())
