import os
import sys

# The tests import their formula references (tests/reference.py) as a plain module.
sys.path.insert(0, os.path.dirname(__file__))
