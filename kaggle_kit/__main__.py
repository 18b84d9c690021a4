import sys

from kaggle_kit.commands import main

sys.exit(main())
