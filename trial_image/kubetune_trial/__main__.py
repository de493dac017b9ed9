import sys

from kubetune_trial.cli import main

sys.exit(main())
