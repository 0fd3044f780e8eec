import sys

from detr_deploy.bench.run import main

sys.exit(main())
