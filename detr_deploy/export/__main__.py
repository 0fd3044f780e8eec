import sys

from detr_deploy.export.torchscript import main

sys.exit(main())
