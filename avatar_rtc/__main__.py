import sys

from avatar_rtc.cli import main

sys.exit(main())
