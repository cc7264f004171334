import sys

from xlrepro.cli import main

sys.exit(main())
