import sys

from detr_deploy.serve.app import main

sys.exit(main())
