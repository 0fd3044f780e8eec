import sys

from detr_deploy.serve.http import main

sys.exit(main())
