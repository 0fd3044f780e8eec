import sys

from detr_deploy.batch.cli import main

sys.exit(main())
