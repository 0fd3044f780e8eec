import sys

from detr_deploy.train.loop import main

sys.exit(main())
