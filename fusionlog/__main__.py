import sys

from fusionlog.cli import main

sys.exit(main())
