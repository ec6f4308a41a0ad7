"""``python -m anomclip.book``: execute the chapters and render the book."""
import sys

from .build import main

sys.exit(main())
