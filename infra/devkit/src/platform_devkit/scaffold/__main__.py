import sys

from platform_devkit.scaffold import main

sys.exit(main(sys.argv[1:]))
