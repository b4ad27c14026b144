import sys

from amser_sb.cli.main import main

sys.exit(main())
