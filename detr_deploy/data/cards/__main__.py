import sys

from detr_deploy.data.cards.cli import main

sys.exit(main())
