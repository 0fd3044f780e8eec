import sys

from detr_deploy.serve.service import main

sys.exit(main())
