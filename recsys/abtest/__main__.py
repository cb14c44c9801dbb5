"""`python -m recsys.abtest`: the abtest@N stage (see recsys.abtest.stage)."""

import sys

from recsys.abtest.stage import main

if __name__ == "__main__":
    sys.exit(main())
