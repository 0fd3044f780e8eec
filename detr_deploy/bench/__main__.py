import sys

from detr_deploy.bench.benchmark import main

sys.exit(main())
